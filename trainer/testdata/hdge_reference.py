"""Reference values for hdge-torch's contrastive term, computed the way the released HDGE code
does it: the B×C×K einsum and a (K+1)-way cross-entropy. Run with Debian's python3-torch:

    /usr/bin/python3 hdge_reference.py OUT.pt C K B SMOOTHING FORM NORM SEED

FORM is official, eq13, simclr-official or simclr-eq13 (the in-batch variant).

It writes a torch.save file holding the inputs (logits, labels, queue) and the loss and the
gradient of the loss with respect to the logits.
"""
import sys

import torch
import torch.nn.functional as F


def smoothed(y, classes, eps):
    d = F.one_hot(y, classes).double()
    if eps == 0:
        return d
    return d * (1 - eps) + eps / classes


def hdge_gen_loss(logits, y, queue, tau, eps, form, norm):
    classes = logits.shape[1]
    dist = smoothed(y, classes, eps)
    prob = F.normalize(logits, dim=1) if norm else logits
    buf = F.normalize(queue, dim=0) if norm else queue
    if form == "official":
        l_pos = torch.logsumexp(dist * prob, dim=1, keepdim=True)
        l_neg = torch.logsumexp(torch.einsum("bc,ck->bck", dist, buf), dim=1)
    else:  # eq13: the paper's form, dist-weighted for smoothed labels
        l_pos = (dist * prob).sum(1, keepdim=True)
        l_neg = torch.einsum("bc,ck->bk", dist, buf)
    out = torch.cat([l_pos, l_neg], dim=1) / tau
    target = torch.zeros(out.shape[0], dtype=torch.long)
    return F.cross_entropy(out, target)


def simclr_gen_loss(logits, y, tau, eps, form, norm):
    """In-batch variant: sample j's logits scored at sample b's label; the diagonal is positive."""
    classes = logits.shape[1]
    dist = smoothed(y, classes, eps)
    p = F.normalize(logits, dim=1) if norm else logits
    if form == "official":
        sim = torch.logsumexp(torch.einsum("bc,jc->bjc", dist, p), dim=2)
    else:
        sim = dist @ p.t()
    target = torch.arange(logits.shape[0])
    return F.cross_entropy(sim / tau, target)


def main():
    out, classes, k, b, eps, form, norm, seed = sys.argv[1:9]
    classes, k, b, eps, seed = int(classes), int(k), int(b), float(eps), int(seed)
    norm = norm == "1"
    g = torch.Generator().manual_seed(seed)
    # float64 reference: the Go side runs in float32 and is compared with a relative tolerance.
    # Inputs are float32 values (what the Go side holds), widened to float64 for the reference.
    logits = (torch.randn(b, classes, generator=g) * 3).double().requires_grad_(True)
    y = torch.randint(0, classes, (b,), generator=g)
    queue = (torch.randn(classes, k, generator=g) * 3).double()
    if form.startswith("simclr-"):
        loss = simclr_gen_loss(logits, y, 0.1, eps, form[len("simclr-"):], norm)
    else:
        loss = hdge_gen_loss(logits, y, queue, 0.1, eps, form, norm)
    loss.backward()
    torch.save({
        "logits": logits.detach().float(), "labels": y, "queue": queue.float(),
        "loss": loss.detach().reshape(1), "grad": logits.grad.float(),
    }, out)


if __name__ == "__main__":
    main()
