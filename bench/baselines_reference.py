#!/usr/bin/python3
"""PyTorch reference steps of two baselines, for trainer's BenchmarkBaselinesAgainstPython. Run with
Debian's python3-torch (the libtorch build hdge-torch links), so the two sides differ only in
orchestration:

    /usr/bin/python3 bench/baselines_reference.py --objective supcon|adv --steps 20 --threads 2

It prints one JSON object: the median step time in ms, every timed step in order ("step_s") and
the step count. The model is reference.py's WideResNet (JEM's, with batch norm; --norm none drops
it, as hdgebench's objectives section runs it), the batch a fixed random one of Fashion-MNIST's
shape, the optimiser Adam, as on the Go side; --warmup untimed steps come first.

- supcon: HobbitLong/SupContrast's step: torch.cat of the two views through the encoder, the
  projection head nn.Sequential(Linear(d, d), ReLU, Linear(d, 128)), F.normalize, SupConLoss as in
  losses.py (temperature 0.1, base temperature 0.07), backward, step.
- adv: MadryLab's PGD training step: L-inf eps 8/255, step 2/255, 7 steps, random start
  U(-eps, eps), the attack on model.eval() (as the robustness library), then cross-entropy on the
  adversarial batch in train mode, backward, step.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import build_model  # noqa: E402


def features(m, x):
    """reference.WideResNet.forward without the linear head."""
    out = m.layer3(m.layer2(m.layer1(m.conv1(x))))
    out = m.lrelu(m.bn1(out))
    out = F.avg_pool2d(out, out.shape[-1])
    return out.view(out.size(0), -1)


def supcon_loss(features, labels, temperature=0.1, base_temperature=0.07):
    """SupContrast's losses.SupConLoss, contrast_mode 'all'."""
    device = features.device
    batch_size = features.shape[0]
    labels = labels.contiguous().view(-1, 1)
    mask = torch.eq(labels, labels.T).float().to(device)
    contrast_count = features.shape[1]
    contrast_feature = torch.cat(torch.unbind(features, dim=1), dim=0)
    anchor_feature = contrast_feature
    anchor_count = contrast_count
    anchor_dot_contrast = torch.div(torch.matmul(anchor_feature, contrast_feature.T), temperature)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    mask = mask.repeat(anchor_count, contrast_count)
    logits_mask = torch.scatter(torch.ones_like(mask), 1,
                                torch.arange(batch_size * anchor_count).view(-1, 1).to(device), 0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mask_pos_pairs = mask.sum(1)
    mask_pos_pairs = torch.where(mask_pos_pairs < 1e-6, 1, mask_pos_pairs)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask_pos_pairs
    loss = -(temperature / base_temperature) * mean_log_prob_pos
    return loss.view(anchor_count, batch_size).mean()


def pgd_linf(model, x, y, eps, alpha, steps):
    """Madry et al.'s PGD in pixel space [0, 1]; the model sees (x - 0.5) / 0.5."""
    delta = torch.empty_like(x).uniform_(-eps, eps)
    xa = (x + delta).clamp(0, 1)
    for _ in range(steps):
        xa = xa.detach().requires_grad_(True)
        loss = F.cross_entropy(model((xa - 0.5) / 0.5), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, [xa])
        xa = xa.detach() + alpha * g.sign()
        xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1)
    return xa.detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objective", choices=["supcon", "adv"], required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--model", default="wrn-10-2")
    ap.add_argument("--nchw", action="store_true", help="row-major layout instead of channels-last")
    ap.add_argument("--norm", choices=["batch", "none"], default="batch")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = build_model({"model": args.model, "norm": args.norm}, 10, 1, torch.device("cpu"))
    layout = torch.contiguous_format if args.nchw else torch.channels_last  # hdge-torch's default: channels-last
    model = model.to(memory_format=layout)
    model.train()
    params = list(model.parameters())
    head = None
    if args.objective == "supcon":
        d = model.linear.in_features
        head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, 128))
        params += list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999))
    b = args.batch
    views = [torch.randn(b, 1, 28, 28).clamp(-1, 1).contiguous(memory_format=layout) for _ in range(2)]
    y = torch.randint(0, 10, (b,))

    def step():
        if args.objective == "supcon":
            f = features(model, torch.cat(views, 0))
            z = F.normalize(head(f), dim=1)
            f1, f2 = torch.split(z, [b, b], dim=0)
            loss = supcon_loss(torch.cat([f1.unsqueeze(1), f2.unsqueeze(1)], dim=1), y)
        else:
            x0 = (views[0] * 0.5 + 0.5).clamp(0, 1)
            model.eval()
            xa = pgd_linf(model, x0, y, 8 / 255, 2 / 255, 7)
            model.train()
            loss = F.cross_entropy(model((xa - 0.5) / 0.5), y)
        loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    step_s = list(times)
    times.sort()
    print(json.dumps({"objective": args.objective, "steps": args.steps, "ms_per_step": 1e3 * times[len(times) // 2], "step_s": step_s,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
