#!/usr/bin/python3
"""Compares the per-step trajectories that `collapse train` (hdge-torch) and collapse.py (the
released loop) wrote into one folder, and writes, into --out:

- trajectories.csv: every step of both sides and their relative differences;
- summary.md: where they part (the first step whose relative difference exceeds --tol, for the
  loss and for the median logit norm), the largest differences, and the values at a few steps of
  every trajectory given;
- logit_norm.png: median logit L2 norm and CE term against the step of both sides, and the median
  norm of every trajectory given (--extra) in a third panel.

    /usr/bin/python3 compare.py --dir DIR --out OUT [--tol 1e-3] [--extra NAME=LABEL ...]

The relative difference of a value is |go - py| / max(|py|, 1e-12).
"""
import argparse
import csv
import json
import os
import sys

COLUMNS = ["loss", "ce", "gen", "acc", "norm_mean", "norm_median"]


def read(path):
    try:
        with open(path) as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        sys.exit(f"{e}")
    if not rows or set(COLUMNS) - set(rows[0]):
        sys.exit(f"{path}: want a header with {', '.join(COLUMNS)}")
    return [{k: float(v) for k, v in r.items()} for r in rows]


def num(v):
    """Four decimals, or three significant digits for a run that diverged."""
    return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.3g}"


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def first_over(go, py, key, tol):
    for g, p in zip(go, py):
        if rel(g[key], p[key]) > tol:
            return int(g["step"])
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="folder with go.csv and py.csv")
    p.add_argument("--out", required=True, help="folder for trajectories.csv, summary.md and logit_norm.png")
    p.add_argument("--go", default="go", help="hdge-torch's trajectory (DIR/NAME.csv)")
    p.add_argument("--py", default="py", help="the released loop's trajectory (DIR/NAME.csv)")
    p.add_argument("--tol", type=float, default=1e-3, help="relative difference at which the two sides part")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=LABEL",
                   help="another trajectory to tabulate and plot (DIR/NAME.csv), e.g. a variant of the Go run")
    p.add_argument("--at", default="0,100,200,400,599", help="steps of the summary table")
    args = p.parse_args()

    go, py = read(os.path.join(args.dir, args.go + ".csv")), read(os.path.join(args.dir, args.py + ".csv"))
    n = min(len(go), len(py))
    go, py = go[:n], py[:n]
    runs = [("hdge-torch", go), ("released loop (Python)", py)]
    for e in args.extra:
        name, _, label = e.partition("=")
        runs.append((label or name, read(os.path.join(args.dir, name + ".csv"))))
    os.makedirs(args.out, exist_ok=True)

    with open(os.path.join(args.out, "trajectories.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "lr"] + [f"{s}_{c}" for c in COLUMNS for s in ("go", "py")] +
                   ["rel_loss", "rel_norm_median"])
        for g, q in zip(go, py):
            w.writerow([int(g["step"]), f"{g['lr']:.6g}"] + [f"{r[c]:.9g}" for c in COLUMNS for r in (g, q)] +
                       [f"{rel(g['loss'], q['loss']):.3g}", f"{rel(g['norm_median'], q['norm_median']):.3g}"])

    part = {k: first_over(go, py, k, args.tol) for k in ("loss", "norm_median", "ce")}
    worst = {k: max(((rel(g[k], q[k]), int(g["step"])) for g, q in zip(go, py)), default=(0, 0))
             for k in ("loss", "ce", "norm_median")}
    lr_same = all(abs(g["lr"] - q["lr"]) <= 1e-12 * max(abs(q["lr"]), 1e-30) for g, q in zip(go, py))
    at = [s for s in (int(x) for x in args.at.split(",")) if s < n]

    lines = [f"# hdge-torch against the released training loop: {n} steps", "",
             f"Same initial weights, queue and batches on both sides; learning rates "
             f"{'identical' if lr_same else 'DIFFERENT'} at every step. Tolerance: relative difference {args.tol:g}.", ""]
    for k, label in (("loss", "total loss"), ("ce", "CE term"), ("norm_median", "median logit norm")):
        where = f"first exceeds it at step {part[k]}" if part[k] is not None else "never exceeds it"
        lines.append(f"- {label}: {where}; largest relative difference {worst[k][0]:.2g} (step {worst[k][1]}).")
    lines += ["", "| run | step | lr | loss | CE | contrastive | batch acc | mean logit norm | median logit norm |",
              "|---|---|---|---|---|---|---|---|---|"]
    for label, rows in runs:
        for s in at:
            if s < len(rows):
                r = rows[s]
                lines.append(f"| {label} | {s} | {r['lr']:.3g} | {num(r['loss'])} | {num(r['ce'])} | {num(r['gen'])} | "
                             f"{r['acc']:.3f} | {num(r['norm_mean'])} | {num(r['norm_median'])} |")
    # Batch accuracy and CE are noisy per step: means over the last 100 steps of each run.
    lines += ["", "Means over the last 100 steps:", "", "| run | steps | CE | batch acc | median logit norm |", "|---|---|---|---|---|"]
    for label, rows in runs:
        tail = rows[-100:]
        m = {k: sum(r[k] for r in tail) / len(tail) for k in ("ce", "acc", "norm_median")}
        lines.append(f"| {label} | {int(tail[0]['step'])}-{int(tail[-1]['step'])} | {num(m['ce'])} | {m['acc']:.3f} | "
                     f"{num(m['norm_median'])} |")
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"steps": n, "tol": args.tol, "part": part, "lr_identical": lr_same,
                   "worst": {k: {"rel": v[0], "step": v[1]} for k, v in worst.items()}}, f, indent=2)
        f.write("\n")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no logit_norm.png", file=sys.stderr)
        return
    # The first two panels hold the two sides only, so that variants of other scales (a run that
    # diverges) do not flatten them; the third holds every run.
    extra = len(runs) > 2
    fig, axes = plt.subplots(1, 3 if extra else 2, figsize=(14 if extra else 10, 3.8), dpi=100)
    a, b = axes[0], axes[1]
    styles = ["-", "--", ":", "-."]
    for i, (label, rows) in enumerate(runs):
        steps = [r["step"] for r in rows]
        if i < 2:
            a.plot(steps, [r["norm_median"] for r in rows], styles[i], label=label, lw=1.2)
            b.plot(steps, [r["ce"] for r in rows], styles[i], label=label, lw=0.8)
        if extra:
            axes[2].plot(steps, [r["norm_median"] for r in rows], styles[i % 4], label=label, lw=1.2)
    for ax in axes[::2] if extra else axes[:1]:
        ax.set_yscale("log")
        ax.set_ylabel("median logit L2 norm")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    b.axhline(2.302585, color="grey", lw=0.6)
    b.set_ylabel("CE term (grey: ln 10)")
    if part["loss"] is not None:
        for ax in (a, b):
            ax.axvline(part["loss"], color="red", lw=0.6, alpha=0.6)
    fig.suptitle("HDGE, wrn-10-2 without batch norm, Adam 1e-4 warm-up 1000, Fashion-MNIST", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "logit_norm.png"))


if __name__ == "__main__":
    main()
