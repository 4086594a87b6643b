"""Fixtures and checks for the ptfile package, run with Debian's python3-torch.

  fixtures.py make OUTDIR   write small torch.save files and, next to each, a .json listing
                            every value in walk order (the expectation the Go tests compare with)
  fixtures.py dump FILE     torch.load FILE and print the same listing as JSON
"""
import collections
import json
import math
import sys

import torch


def walk(v, path, out):
    if isinstance(v, dict):
        keys = [str(k) for k in v.keys()]
        out.append({"path": path, "type": "dict", "keys": keys,
                    "ordered": isinstance(v, collections.OrderedDict)})
        for k, x in v.items():
            walk(x, path + "/" + str(k), out)
    elif isinstance(v, (list, tuple)):
        out.append({"path": path, "type": "list", "len": len(v)})
        for i, x in enumerate(v):
            walk(x, path + "/" + str(i), out)
    elif isinstance(v, torch.Tensor):
        out.append({"path": path, "type": "tensor",
                    "dtype": str(v.dtype).replace("torch.", ""),
                    "shape": list(v.shape),
                    "requires_grad": v.requires_grad,
                    "contiguous": v.is_contiguous(),
                    "values": [num(x) for x in v.detach().reshape(-1).tolist()]})
    elif isinstance(v, bool):
        out.append({"path": path, "type": "bool", "value": v})
    elif isinstance(v, int):
        out.append({"path": path, "type": "int", "value": v})
    elif isinstance(v, float):
        out.append({"path": path, "type": "float", "value": num(v)})
    elif isinstance(v, str):
        out.append({"path": path, "type": "str", "value": v})
    elif v is None:
        out.append({"path": path, "type": "none"})
    else:
        raise TypeError(f"{path}: unexpected {type(v)}")
    return out


def num(x):
    # JSON has no infinities or NaN; those travel as text that Go's ParseFloat reads.
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    return x


def save(obj, outdir, name):
    torch.save(obj, f"{outdir}/{name}.pt")
    with open(f"{outdir}/{name}.json", "w") as f:
        f.write(dumps(walk(obj, "", [])))


def dumps(entries):
    # One entry a line keeps the checked-in expectations readable in diffs.
    return "[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n"


def make(outdir):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3),
        torch.nn.BatchNorm2d(2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
    )
    x = torch.randn(4, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    save(model.state_dict(), outdir, "state_dict")
    save(opt.state_dict(), outdir, "adam")

    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    misc = {
        "transposed": base.t(),
        "sliced": base[1:, ::2],
        "expanded": torch.tensor([7.5]).expand(3, 2),
        "param": torch.nn.Parameter(torch.tensor([[1.0, -2.0]])),
        "float64": torch.tensor([0.1, -1e300], dtype=torch.float64),
        "float16": torch.tensor([0.5, -2.0, 65504.0], dtype=torch.float16),
        "bfloat16": torch.tensor([1.5, -3.0], dtype=torch.bfloat16),
        "int32": torch.tensor([-5, 2**31 - 1], dtype=torch.int32),
        "int16": torch.tensor([-300, 7], dtype=torch.int16),
        "int8": torch.tensor([-128, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "int64": torch.tensor([-(2**62), 3]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "nested": {"list": [1, 2.5, "s", None, True], "tuple": (3, 4), "big": 2**40, 5: "int key"},
    }
    save(misc, outdir, "misc")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    elif sys.argv[1] == "dump":
        sys.stdout.write(dumps(walk(torch.load(sys.argv[2]), "", [])))
    else:
        sys.exit("usage: fixtures.py make OUTDIR | dump FILE")
