#!/usr/bin/python3
"""BenchmarkPrecisionStep's step in PyTorch: a WideResNet training step (forward, cross-entropy,
backward, Adam), channels-last, batch 64, in float32 and under torch.autocast("cpu", bfloat16),
alternating the two, for the Go/Python comparison. Run with Debian's python3-torch:

    /usr/bin/python3 nn/testdata/bench_precision.py [STEPS] [THREADS] [MODEL]

MODEL (wrn-10-2-1x28x28 or wrn-16-4-3x32x32) runs only that one.

Prints one JSON line per model: median img/s for each precision and the bf16/fp32 ratio.
"""
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wrn_reference as W  # noqa: E402


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    torch.set_num_threads(threads)
    only = sys.argv[3] if len(sys.argv) > 3 else None
    torch.manual_seed(1)
    for name, depth, width, ch, side, norm in [("wrn-10-2-1x28x28", 10, 2, 1, 28, "batch"),
                                               ("wrn-16-4-3x32x32", 16, 4, 3, 32, None)]:
        if only and name != only:
            continue
        m = W.WideResNet(depth, width, 10, ch, norm=norm).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(m.parameters(), lr=1e-4)
        x = torch.randn(64, ch, side, side).to(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (64,))

        def step(bf16):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = m(x)
            loss = F.cross_entropy(logits.float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return time.perf_counter() - t0

        step(False)
        step(True)
        t32, t16 = [], []
        for i in range(steps):
            order = (False, True) if i % 2 == 0 else (True, False)
            for bf in order:
                (t16 if bf else t32).append(step(bf))
        m32, m16 = statistics.median(t32), statistics.median(t16)
        print(json.dumps({"model": name, "threads": threads, "steps": steps, "fp32_img_s": 64 / m32,
                          "bf16_img_s": 64 / m16, "bf16_over_fp32": m32 / m16}), flush=True)


if __name__ == "__main__":
    main()
