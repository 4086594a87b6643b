#!/usr/bin/python3
"""The released HDGE training loop (train_wrn.py with model.HYM and Adam, as bench/reference.py
reproduces it) on the inputs `collapse export` wrote: the same initial weights (init.pt), queue
(queue.pt) and batches (x.npy, y.npy: the noised images hdge-torch's loader made). Writes one CSV
row per step with the columns of `collapse train`:

    /usr/bin/python3 collapse.py --dir DIR [--name py] [--schedule go|released]

--schedule go sets hdge-torch's learning rate of each step (lr.npy), so that the two sides differ
only in their implementation; --schedule released is train_wrn.py's own warm-up, lr * i / warmup
for step i <= warmup (0 at step 0), one step behind hdge-torch's lr * (i + 1) / warmup.
"""
import argparse
import csv
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import reference  # noqa: E402  (bench/reference.py: JEM's WideResNet and the released HDGE loss)


class ClassTableQueue(reference.Queue):
    """model.HYM's joint() with the B x C x K einsum computed once per class instead of once per
    sample: with a one-hot dist, sample b's slice of einsum("nc,ck->nck", dist, buffer) is class
    y_b's slice of einsum("nc,ck->nck", eye(C), buffer), the same floats reduced in the same order,
    so l_neg is bitwise the released one (checked on the first step) at C/B of the cost. The
    negatives carry no gradient in either form."""

    checked = False

    def joint(self, f_logit, dist, evaluation=False):
        if not self.checked:
            want, _ = reference.Queue.joint(self, f_logit, dist, evaluation=True)
        prob = torch.nn.functional.normalize(f_logit, dim=1)
        l_pos = torch.logsumexp(dist * prob, dim=1, keepdim=True)
        buffer = torch.nn.functional.normalize(self.queue_logit.clone().detach(), dim=0)
        eye = torch.eye(dist.shape[1], dtype=dist.dtype, device=dist.device)
        table = torch.logsumexp(torch.einsum("nc,ck->nck", [eye, buffer]), dim=1)  # C x K
        l_neg = table[dist.argmax(1)]
        logits = torch.cat([l_pos, l_neg], dim=1)
        logits /= self.T
        if not self.checked:
            if not torch.equal(logits, want):
                sys.exit("the per-class negatives differ from the released einsum: use --negatives einsum")
            self.checked = True
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        if not evaluation:
            self._dequeue_and_enqueue(f_logit)
        return logits, labels


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="folder that `collapse export` wrote")
    p.add_argument("--name", default="py", help="the trajectory's name: writes DIR/NAME.csv")
    p.add_argument("--schedule", default="go", choices=["go", "released"], help="learning rate of each step")
    p.add_argument("--steps", type=int, default=0, help="steps to train (0: every exported batch)")
    p.add_argument("--single-forward", action="store_true",
                   help="one forward pass per step (the released loop runs f.classify and f.joint separately)")
    p.add_argument("--negatives", default="per-class", choices=["per-class", "einsum"],
                   help="the released B x C x K einsum, or the same values computed once per class (see ClassTableQueue)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    try:
        with open(os.path.join(args.dir, "inputs.json")) as f:
            inp = json.load(f)
    except OSError as e:
        sys.exit(f"--dir: {e} (run collapse export first)")
    steps = args.steps or inp["steps"]
    if not 0 < steps <= inp["steps"]:
        sys.exit(f"--steps {steps}: the folder holds {inp['steps']} batches")
    torch.set_num_threads(args.threads)
    xs = np.load(os.path.join(args.dir, "x.npy"), mmap_mode="r")
    ys = np.load(os.path.join(args.dir, "y.npy"))
    lrs = np.load(os.path.join(args.dir, "lr.npy"))
    classes = inp["classes"]
    cfg = {"model": inp["model"], "norm": inp["norm"], "weights": os.path.join(args.dir, "init.pt"),
           "objective": "hdge", "alpha": 0.5, "queue_size": inp["queue_size"], "temperature": 0.1}
    device = torch.device("cpu")
    model = reference.build_model(cfg, classes, inp["shape"][0], device)
    model.train()
    optim = reference.adam(model, inp["lr"])
    objective = reference.Objective(cfg, classes, device)
    if args.negatives == "per-class":
        objective.queue = ClassTableQueue(classes, inp["queue_size"], cfg["temperature"], device)
    objective.queue.queue_logit = torch.load(os.path.join(args.dir, "queue.pt"))["queue"].clone()

    rows = []
    t0 = time.perf_counter()
    for i in range(steps):
        if args.schedule == "go":
            lr = float(lrs[i])
        else:  # train_wrn.py: if cur_iter <= warmup_iters: lr = args.lr * cur_iter / warmup_iters
            lr = inp["lr"] * i / inp["warmup"] if i <= inp["warmup"] else inp["lr"]
        for g in optim.param_groups:
            g["lr"] = lr
        x = torch.from_numpy(np.array(xs[i]))
        y = torch.from_numpy(ys[i])
        logits = model(x)
        joint = None if args.single_forward else model(x)
        loss, terms = objective(logits, y, joint)
        with torch.no_grad():
            lg = logits.detach().double()
            norms = lg.norm(dim=1).numpy()
            acc = (lg.argmax(1) == y).double().mean().item()
        rows.append([i, lr, loss.item(), terms["ce"].item(), terms["gen"].item(), acc, float(norms.mean()),
                     float(np.median(norms))])
        optim.zero_grad()
        loss.backward()
        optim.step()
        if (i + 1) % 100 == 0:
            print(f"{args.name}: step {i + 1} loss {rows[-1][2]:.4f} ce {rows[-1][3]:.4f} "
                  f"median |logit| {rows[-1][7]:.4f} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    path = os.path.join(args.dir, args.name + ".csv")
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "lr", "loss", "ce", "gen", "acc", "norm_mean", "norm_median"])
        for r in rows:
            w.writerow([r[0]] + [f"{v:.9g}" for v in r[1:]])
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
