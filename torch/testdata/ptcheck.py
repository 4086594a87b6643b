#!/usr/bin/python3
"""Helper for the Save/Load round-trip tests (run with Debian's python3-torch).

  ptcheck.py dump FILE   torch.load FILE (a dict of tensors) and print it as JSON
  ptcheck.py save FILE   torch.save a small model's state_dict (an OrderedDict) to FILE and print
                         it as JSON
JSON: {key: {"dtype", "shape", "data"}}, data as plain numbers (bools as 0/1).
"""
import json
import sys

import torch


def enc(t):
    dt = str(t.dtype).replace("torch.", "")
    return {"dtype": dt, "shape": list(t.shape),
            "data": [float(v) for v in t.detach().reshape(-1).to(torch.float64).tolist()]}


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "dump":
        d = torch.load(path)
        if not isinstance(d, dict):
            sys.exit("not a dict: %r" % type(d))
        print(json.dumps({k: enc(v) for k, v in d.items()}))
    elif mode == "save":
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
                                torch.nn.Linear(8, 3))
        m.train()
        m(torch.randn(4, 1, 4, 4))  # moves the batch-norm running stats and num_batches_tracked
        sd = m.state_dict()
        torch.save(sd, path)
        print(json.dumps({k: enc(v) for k, v in sd.items()}))
    else:
        sys.exit("unknown mode " + mode)


main()
