#!/usr/bin/python3
"""The conv step of BenchmarkConvStep in PyTorch, for the Go/Python ratio. Run with Debian's
python3-torch:
  bench_conv.py THREADS STEPS   prints {"median_s": ..., "threads": ...}
  bench_conv.py THREADS serve   for each line N read from stdin, runs N steps and prints their
                                times in seconds as a JSON list (the Go benchmark interleaves
                                its own steps with these, so both see the same machine load)

One step: three 3x3 convolutions (3->16->32->64 channels, with bias and ReLU, max-pooling after the
first two) on a 64x3x32x32 batch, global average pooling, a linear layer to 10 classes,
cross-entropy, backward. Parameters' gradients are dropped before each step (set_to_none).
"""
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def main():
    threads, steps = int(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    shapes = [(16, 3, 3, 3), (16,), (32, 16, 3, 3), (32,), (64, 32, 3, 3), (64,), (10, 64), (10,)]
    params = [(torch.randn(s, generator=g) * 0.1).requires_grad_(True) for s in shapes]
    c1w, c1b, c2w, c2b, c3w, c3b, fw, fb = params
    x = torch.randn(64, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)

    def step():
        for p in params:
            p.grad = None
        h = F.max_pool2d(F.relu(F.conv2d(x, c1w, c1b, 1, 1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, c2w, c2b, 1, 1)), 2)
        h = F.relu(F.conv2d(h, c3w, c3b, 1, 1))
        h = F.adaptive_avg_pool2d(h, (1, 1)).flatten(1)
        loss = F.cross_entropy(F.linear(h, fw, fb), y)
        loss.backward()

    def timed(n):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return times

    timed(3)
    if steps == "serve":
        print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
        for line in sys.stdin:
            print(json.dumps(timed(int(line))), flush=True)
        return
    times = timed(int(steps))
    print(json.dumps({"median_s": statistics.median(times), "threads": torch.get_num_threads()}))


main()
