#!/usr/bin/python3
"""PyTorch reference of one JEM training step (wgrathwohl/JEM train_wrn_ebm.py: sample_p_0,
sample_q, and the loss CE + p(x)), for the Go/Python ratio of hdge-torch's BenchmarkJEMStepAlone.
Run with Debian's python3-torch, the same libtorch build as hdge-torch:

    /usr/bin/python3 bench/jem_reference.py --threads 2 --steps 5

The model is reference.py's WideResNet of JEM (wrn-10-2, no normalisation) on random 1x28x28
batches of 64 with 10 classes; the replay buffer has 10000 chains U(-1, 1), 5 % reinitialised per
draw; SGLD is 20 steps of size 1 with noise 0.01, the model in eval mode while sampling; Adam lr
1e-3. It prints one JSON object: the median milliseconds per training step.

Measured on the 2-core AMD EPYC build machine, shared with other work (load average 4-7), two
threads each side, channels-last on both, run in alternation with
`HDGE_BENCH_THREADS=2 go test ./trainer -run '^$' -bench 'JEMStepAlone/channels-last=true' -benchtime 3x`:
Python 33.4 s and 18.7 s per step against Go 12.4 s and 11.9 s, Go/Python speed 2.7x and 1.6x
(target: at least 1.10x). The spread is the machine's load; rerun on a quiet machine before
quoting a single figure.

hdgebench's objectives section runs it with --model, --warmup and the sampler's flags, and reads
"step_s" (every timed step, in order) from the JSON. With --memory it trains nothing: it reports
what creating the replay buffer as JEM does (--buffer-size chains of --shape, U(-1, 1)) adds to
the process's resident set (VmRSS before and after) and, with --checkpoint PATH, the size of
JEM's checkpoint file there (torch.save of model_state_dict and replay_buffer, as
train_wrn_ebm.py's checkpoint()).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import build_model  # noqa: E402


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def sample_p_0(buffer, bs, reinit_freq, gen):
    inds = torch.randint(0, buffer.size(0), (bs,), generator=gen)
    buffer_samples = buffer[inds]
    random_samples = torch.rand(buffer_samples.shape, generator=gen) * 2 - 1
    choose_random = (torch.rand(bs, generator=gen) < reinit_freq).float()[:, None, None, None]
    return choose_random * random_samples + (1 - choose_random) * buffer_samples, inds


def sample_q(f, buffer, bs, cfg, gen):
    f.eval()
    x_k, inds = sample_p_0(buffer, bs, cfg.reinit_freq, gen)
    x_k = x_k.clone().requires_grad_(True)
    for _ in range(cfg.sgld_steps):
        # The per-sample gradient: the batch sum, as JEM's f(x_k).sum().
        g = torch.autograd.grad(f(x_k).logsumexp(1).sum(), [x_k])[0]
        x_k.data += cfg.sgld_lr * g + cfg.sgld_std * torch.randn(x_k.shape, generator=gen)
    f.train()
    final = x_k.detach()
    buffer[inds] = final
    return final


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps")
    ap.add_argument("--sgld-steps", type=int, default=20)
    ap.add_argument("--sgld-lr", type=float, default=1.0)
    ap.add_argument("--sgld-std", type=float, default=0.01)
    ap.add_argument("--reinit-freq", type=float, default=0.05)
    ap.add_argument("--buffer-size", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--model", default="wrn-10-2", help="wrn-DEPTH-WIDTH, no normalisation (JEM's)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed training steps first")
    ap.add_argument("--memory", action="store_true", help="measure the replay buffer's memory instead of steps")
    ap.add_argument("--shape", default="1,28,28", help="--memory: one chain's C,H,W")
    ap.add_argument("--checkpoint", default="", help="--memory: write JEM's checkpoint here and report its size")
    cfg = ap.parse_args()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(2)
    if cfg.memory:
        memory(cfg, gen)
        return
    f = build_model({"model": cfg.model, "norm": "none"}, 10, 1, torch.device("cpu"))
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    f = f.to(memory_format=fmt)
    opt = torch.optim.Adam(f.parameters(), lr=1e-3)
    buffer = torch.rand(cfg.buffer_size, 1, 28, 28, generator=gen) * 2 - 1
    x = torch.randn(cfg.batch, 1, 28, 28, generator=gen).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (cfg.batch,), generator=gen)

    def step():
        x_q = sample_q(f, buffer, cfg.batch, cfg, gen).contiguous(memory_format=fmt)
        logits = f(x)
        fp = logits.logsumexp(1).mean()
        fq = f(x_q).logsumexp(1).mean()
        loss = F.cross_entropy(logits, y) - (fp - fq)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(cfg.warmup):
        step()
    times = []
    for _ in range(cfg.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    step_s = list(times)
    times.sort()
    print(json.dumps({"ms_per_step": 1e3 * times[len(times) // 2], "step_s": step_s, "steps": cfg.steps, "sgld_steps": cfg.sgld_steps,
                      "threads": cfg.threads, "channels_last": cfg.channels_last, "torch": torch.__version__,
                      "buffer_bytes": buffer.numel() * buffer.element_size()}))


def memory(cfg, gen):
    shape = tuple(int(v) for v in cfg.shape.split(","))
    f = build_model({"model": cfg.model, "norm": "none"}, 10, shape[0], torch.device("cpu"))
    rss0 = rss_kib()
    buffer = torch.rand(cfg.buffer_size, *shape, generator=gen) * 2 - 1  # JEM's init_random
    rss1 = rss_kib()
    out = {"rss0_kib": rss0, "rss1_kib": rss1, "buffer_bytes": buffer.numel() * buffer.element_size(),
           "torch": torch.__version__}
    if cfg.checkpoint:
        torch.save({"model_state_dict": f.state_dict(), "replay_buffer": buffer}, cfg.checkpoint)
        out["checkpoint_bytes"] = os.path.getsize(cfg.checkpoint)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
