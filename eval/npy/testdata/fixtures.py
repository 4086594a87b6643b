"""Fixtures and checks for the npy package, run with Debian's python3-numpy.

  fixtures.py make OUTDIR    write .npy files with numpy.save and expected.json describing them
  fixtures.py check FILE...  numpy.load each FILE and print dtype, shape, values and whether
                             numpy.save of the loaded array gives the very same bytes
"""
import io
import json
import math
import sys

import numpy as np


def num(x):
    # JSON has no infinities or NaN; those travel as text that Go's ParseFloat reads.
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    return x


def describe(a):
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "values": [num(v) for v in a.reshape(-1).tolist()]}


def make(outdir):
    rng = np.random.default_rng(0)
    arrays = {
        "f4_2x3": rng.standard_normal((2, 3)).astype("<f4"),
        "f8_4": np.array([0.1, -1e300, np.inf, -0.0]),
        "i8_3x1": np.array([[-(2**62)], [0], [2**62]], dtype="<i8"),
        "u1_labels": np.array([0, 9, 255, 3], dtype=np.uint8),
        "bool_2x2": np.array([[True, False], [False, True]]),
        "f4_big_endian": np.array([1.5, -2.25, 3e38], dtype=">f4"),
        "i8_big_endian": np.array([1, -2, 2**40], dtype=">i8"),
        "f8_big_endian": np.array([[1.0, 2.0]], dtype=">f8"),
        "f4_scalar": np.array(3.25, dtype=np.float32),
        "f4_empty": np.zeros((0, 3), dtype=np.float32),
        "f4_transposed": np.ascontiguousarray(np.arange(6, dtype=np.float32).reshape(2, 3).T),
    }
    expected = {}
    for name, a in arrays.items():
        np.save(f"{outdir}/{name}.npy", a)
        expected[name] = describe(a)
    # Arrays numpy can write that this package refuses, with the reason it gives.
    np.save(f"{outdir}/bad_fortran.npy", np.asfortranarray(np.arange(6.0).reshape(2, 3)))
    np.save(f"{outdir}/bad_int32.npy", np.arange(3, dtype=np.int32))
    np.save(f"{outdir}/bad_structured.npy", np.zeros(2, dtype=[("a", "<f4"), ("b", "<i8")]))
    with open(f"{outdir}/expected.json", "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


def check(paths):
    out = []
    for p in paths:
        a = np.load(p)
        d = describe(a)
        buf = io.BytesIO()
        np.save(buf, a)
        with open(p, "rb") as f:
            d["same_bytes"] = buf.getvalue() == f.read()
        out.append(d)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    elif sys.argv[1] == "check":
        check(sys.argv[2:])
    else:
        sys.exit("usage: fixtures.py make OUTDIR | check FILE...")
