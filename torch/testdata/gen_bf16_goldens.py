#!/usr/bin/python3
"""Writes bf16_goldens.json: a conv + linear net's logits, loss and parameter gradients under
torch.autocast("cpu", dtype=torch.bfloat16), with the float32 weights and batch they came from, for
TestBF16AgainstAutocast. Run with Debian's python3-torch (the same libtorch build the Go package
links):  /usr/bin/python3 torch/testdata/gen_bf16_goldens.py [OUT.json]
(the test runs it itself where python3-torch is installed, since oneDNN's bf16 kernels differ by
CPU: emulated, AVX512-BF16 or AMX round differently).

The net: conv 3->8 (3x3, padding 1, bias) -> leaky relu 0.2 -> mean over H, W -> linear 8->5, then
cross-entropy (mean) on the logits converted to float32; in NCHW and in channels-last.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "bf16_goldens.json")


def enc(t):
    return [float(str(np.float32(v))) for v in t.detach().float().reshape(-1).numpy()]


def main():
    g = torch.Generator().manual_seed(4321)
    cw = torch.randn(8, 3, 3, 3, generator=g) * 0.3
    cb = torch.randn(8, generator=g) * 0.3
    lw = torch.randn(5, 8, generator=g) * 0.3
    lb = torch.randn(5, generator=g) * 0.3
    x = torch.randn(4, 3, 6, 6, generator=g)
    y = torch.tensor([0, 1, 2, 4])
    cases = []
    for layout in ["nchw", "channels_last"]:
        ps = [t.clone().requires_grad_(True) for t in (cw, cb, lw, lb)]
        xi = x
        if layout == "channels_last":
            ps[0] = ps[0].detach().to(memory_format=torch.channels_last).requires_grad_(True)
            xi = x.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = F.leaky_relu(F.conv2d(xi, ps[0], ps[1], padding=1), 0.2)
            logits = F.linear(h.mean(dim=(2, 3)), ps[2], ps[3])
        assert logits.dtype == torch.bfloat16
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        cases.append({"layout": layout, "logits": enc(logits), "loss": loss.item(),
                      "grads": [enc(p.grad) for p in ps]})
    out = {"torch": torch.__version__, "x": enc(x), "y": y.tolist(),
           "params": [enc(t) for t in (cw, cb, lw, lb)], "cases": cases}
    with open(OUT, "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
