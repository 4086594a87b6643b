"""Goldens for nn.SupConLoss and nn.NTXentLoss: loss values and gradients with respect to the
features, from a deliberately plain reference (a Python loop over anchors, written from the
definitions in the SupCon and SimCLR papers) in float64 on Debian's python3-torch.

    /usr/bin/python3 make_contrastive_goldens.py contrastive_goldens.pt

Each case NAME stores NAME.features [B, V, d] (rows L2-normalised), NAME.labels [B] when the case
has labels, NAME.loss (0-d) and NAME.grad (d loss / d features), plus NAME.params: [kind, tau,
tau_base] with kind 0 = SupCon, 1 = NT-Xent.
"""
import sys

import torch


def supcon(features, labels, tau, tau_base):
    """SupCon, 'all' mode: every view-row is an anchor; positives share its label (itself
    excluded); the denominator runs over every row but itself. Anchors without a positive add 0
    and still count in the mean (SupContrast's handling of that case)."""
    b, v, _ = features.shape
    rows = torch.cat([features[:, k] for k in range(v)], 0)  # view-major
    if labels is None:
        lab = list(range(b)) * v
    else:
        lab = [int(labels[i]) for i in range(b)] * v
    n = v * b
    total = features.new_zeros(())
    for i in range(n):
        z = rows @ rows[i] / tau
        others = [k for k in range(n) if k != i]
        log_denom = torch.logsumexp(z[others], 0)
        pos = [p for p in others if lab[p] == lab[i]]
        if pos:
            total = total + (-(tau / tau_base)) * sum(z[p] - log_denom for p in pos) / len(pos)
    return total / n


def ntxent(features, tau):
    b = features.shape[0]
    rows = torch.cat([features[:, 0], features[:, 1]], 0)
    total = features.new_zeros(())
    for i in range(2 * b):
        z = rows @ rows[i] / tau
        p = (i + b) % (2 * b)
        others = [k for k in range(2 * b) if k != i]
        total = total + torch.logsumexp(z[others], 0) - z[p]
    return total / (2 * b)


def main(out):
    g = torch.Generator().manual_seed(20261201)
    cases = {
        # name: (B, V, d, labels or None, kind, tau, tau_base)
        "supcon_2views_repeated": (8, 2, 16, [0, 1, 0, 2, 1, 0, 3, 3], 0, 0.1, 0.07),
        "supcon_1view_singleton": (6, 1, 8, [0, 0, 1, 2, 2, 2], 0, 0.1, 0.07),
        "supcon_1view_all_distinct": (4, 1, 8, [0, 1, 2, 3], 0, 0.1, 0.07),
        "supcon_3views": (5, 3, 8, [1, 1, 0, 4, 1], 0, 0.5, 0.07),
        "supcon_unsupervised": (6, 2, 8, None, 0, 0.2, 0.2),
        "supcon_all_same_label": (4, 2, 4, [7, 7, 7, 7], 0, 0.1, 0.07),
        "ntxent_tau05": (6, 2, 8, None, 1, 0.5, 0.5),
        "ntxent_tau01": (6, 2, 8, None, 1, 0.1, 0.1),
        "ntxent_b2": (2, 2, 4, None, 1, 0.07, 0.07),
    }
    blob = {}
    for name, (b, v, d, labels, kind, tau, base) in cases.items():
        x = torch.randn(b, v, d, generator=g, dtype=torch.float64)
        x = x / x.norm(dim=2, keepdim=True)
        f = x.clone().requires_grad_(True)
        lab = None if labels is None else torch.tensor(labels, dtype=torch.int64)
        loss = supcon(f, lab, tau, base) if kind == 0 else ntxent(f, tau)
        if loss.requires_grad:
            (grad,) = torch.autograd.grad(loss, f)
        else:  # no anchor has a positive: the loss is the constant 0
            grad = torch.zeros_like(f)
        blob[name + ".features"] = x
        if lab is not None:
            blob[name + ".labels"] = lab
        blob[name + ".loss"] = loss.detach()
        blob[name + ".grad"] = grad
        blob[name + ".params"] = torch.tensor([kind, tau, base], dtype=torch.float64)
        print(f"{name}: loss {loss.item():.6f}")
    torch.save(blob, out)


if __name__ == "__main__":
    main(sys.argv[1])
