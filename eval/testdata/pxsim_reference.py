"""HDGE's contrastive OOD score (pxsim) computed as the released evaluation writes it: the label
distribution of the predicted class, the B×C×K einsum against the queue, and the log-softmax of
the positive over [l_pos, l_neg] / τ plus log K. In float64.

    pxsim_reference.py LOGITS.npy QUEUE.npy OUT.npy TAU NORM(0|1) FORM(official|eq13) SMOOTHING
"""
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F


def main(logits_path, queue_path, out_path, tau, norm, form, eps):
    logits = torch.from_numpy(np.load(logits_path)).double()
    queue = torch.from_numpy(np.load(queue_path)).double()
    c, k = queue.shape
    y = logits.argmax(1)
    dist = F.one_hot(y, c).double() * (1 - eps) + eps / c
    p = F.normalize(logits, dim=1) if norm else logits
    buf = F.normalize(queue, dim=0) if norm else queue
    if form == "official":
        l_pos = torch.logsumexp(dist * p, 1)
        l_neg = torch.logsumexp(torch.einsum("bc,ck->bck", dist, buf), 1)
    else:
        l_pos = (dist * p).sum(1)
        l_neg = torch.einsum("bc,ck->bk", dist, buf)
    lg = torch.cat([l_pos[:, None], l_neg], 1) / tau
    score = F.log_softmax(lg, 1)[:, 0] + math.log(k)
    np.save(out_path, score.numpy())


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], a[2], float(a[3]), a[4] == "1", a[5], float(a[6]))
