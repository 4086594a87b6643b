#!/usr/bin/python3
"""Writes goldens.json: inputs, outputs and input gradients of every op of package torch, plus
optimizer trajectories, computed with PyTorch. Run with Debian's python3-torch (the same libtorch
build the Go package links):  /usr/bin/python3 torch/testdata/gen_goldens.py

Each op case: inputs (with a requires-grad flag each), params, outputs, and for differentiable
cases a random cotangent per float output ("gouts") and the gradient of sum(out_i * gout_i) with
respect to each grad-requiring input. Tensors are {"dtype", "shape", "data"}; float32 data is
written in its shortest round-trip decimal form to keep the file small.
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens.json")


def enc(t):
    if t is None:
        return None
    t = t.detach().cpu()
    dt = {torch.float32: "float32", torch.float64: "float64", torch.int64: "int64",
          torch.uint8: "uint8", torch.bool: "bool"}[t.dtype]
    flat = t.reshape(-1)
    if dt == "float32":
        data = [float(str(np.float32(v))) for v in flat.numpy()]
    elif dt == "float64":
        data = [float(v) for v in flat.numpy()]
    else:
        data = [int(v) for v in flat.to(torch.int64).numpy()]
    return {"dtype": dt, "shape": list(t.shape), "data": data}


gen = torch.Generator().manual_seed(1234)


def rn(*shape, dtype=torch.float32):
    return torch.randn(tuple(shape), generator=gen, dtype=dtype)


def pos(*shape):
    return torch.rand(*shape, generator=gen) + 0.1


cases = []


def case(name, op, fn, inputs, params=None, grad=None, atol=1e-5, rtol=1e-5, backward=True):
    """fn(*inputs, **params) -> tensor or tuple of tensors. grad[i]: input i requires grad."""
    params = params or {}
    if grad is None:
        grad = [t.is_floating_point() for t in inputs]
    xs = [t.clone().requires_grad_(g) for t, g in zip(inputs, grad)]
    outs = fn(*xs, **params)
    if not isinstance(outs, (tuple, list)):
        outs = [outs]
    # JSON has no infinity; the Go side reads these strings back as ±Inf.
    jparams = {k: ("inf" if v == math.inf else "-inf" if v == -math.inf else v) for k, v in params.items()}
    c = {"name": name, "op": op, "params": jparams, "inputs": [enc(t) for t in inputs], "grad": grad,
         "outputs": [enc(o) for o in outs], "atol": atol, "rtol": rtol}
    diff = [o for o in outs if o.requires_grad]
    if backward and diff and any(grad):
        gouts = [rn(*o.shape, dtype=o.dtype) if o.requires_grad else None for o in outs]
        loss = sum((o * g).sum() for o, g in zip(outs, gouts) if g is not None)
        loss.backward()
        c["gouts"] = [enc(g) for g in gouts]
        c["grads"] = [enc(x.grad) if g else None for x, g in zip(xs, grad)]
    cases.append(c)


# ---- element-wise ----
a34, b4 = rn(3, 4), rn(4)
case("add broadcast", "Add", torch.add, [a34, b4])
case("sub broadcast", "Sub", torch.sub, [a34, b4])
case("mul broadcast", "Mul", torch.mul, [a34, rn(3, 1)])
case("div broadcast", "Div", torch.div, [a34, pos(4)])
case("add scalar", "AddScalar", lambda a, v: a + v, [a34], {"v": 1.5})
case("sub scalar", "SubScalar", lambda a, v: a - v, [a34], {"v": 0.25})
case("mul scalar", "MulScalar", lambda a, v: a * v, [a34], {"v": -3.0})
case("div scalar", "DivScalar", lambda a, v: a / v, [a34], {"v": 7.0})
case("add scalar int64", "AddScalar", lambda a, v: a + int(v), [torch.arange(6)], {"v": 2.0})
for name, fn, x in [("Neg", torch.neg, a34), ("Abs", torch.abs, a34), ("Exp", torch.exp, a34),
                    ("Log", torch.log, pos(3, 4)), ("Log1p", torch.log1p, pos(3, 4)),
                    ("Sqrt", torch.sqrt, pos(3, 4)), ("Sign", torch.sign, a34),
                    ("Square", torch.square, a34), ("ReLU", torch.relu, a34),
                    ("Sigmoid", torch.sigmoid, a34), ("Tanh", torch.tanh, a34)]:
    case(name.lower(), name, fn, [x])
case("pow 3", "Pow", lambda a, e: a.pow(e), [a34], {"e": 3.0})
case("pow 0.5", "Pow", lambda a, e: a.pow(e), [pos(3, 4)], {"e": 0.5})
case("leaky relu", "LeakyReLU", lambda a, slope: F.leaky_relu(a, slope), [a34], {"slope": 0.2})
case("minimum", "Minimum", torch.minimum, [a34, rn(3, 4)])
case("maximum", "Maximum", torch.maximum, [a34, rn(4)])
case("clamp both", "Clamp", lambda a, lo, hi: a.clamp(lo, hi), [a34], {"lo": -0.5, "hi": 0.5})
case("clamp max only", "Clamp", lambda a, lo, hi: a.clamp(max=hi), [a34], {"lo": -math.inf, "hi": 0.3})
case("clamp min only", "Clamp", lambda a, lo, hi: a.clamp(min=lo), [a34], {"lo": 0.1, "hi": math.inf})
case("where", "Where", torch.where, [rn(3, 4) > 0, a34, rn(3, 4)], grad=[False, True, True])
case("eq", "Eq", torch.eq, [torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 3, 0])])

# ---- reductions ----
a234 = rn(2, 3, 4)
case("sum dims", "Sum", lambda a, dims, keep: a.sum(dims, keepdim=keep), [a234], {"dims": [0, 2], "keep": False})
case("sum all", "Sum", lambda a, dims, keep: a.sum(), [a234], {"dims": None, "keep": False})
case("sum all keep", "Sum", lambda a, dims, keep: a.sum((0, 1, 2), keepdim=True), [a234], {"dims": None, "keep": True})
case("mean dims keep", "Mean", lambda a, dims, keep: a.mean(dims, keepdim=keep), [a234], {"dims": [1], "keep": True})
case("mean all", "Mean", lambda a, dims, keep: a.mean(), [a234], {"dims": None, "keep": False})
case("logsumexp dim", "LogSumExp", lambda a, dims, keep: torch.logsumexp(a, dims, keepdim=keep), [a234 * 5],
     {"dims": [2], "keep": False})
case("logsumexp all", "LogSumExp", lambda a, dims, keep: torch.logsumexp(a, (0, 1, 2)), [a234],
     {"dims": None, "keep": False})
case("max dim", "Max", lambda a, dim, keep: tuple(torch.max(a, dim, keepdim=keep)), [a234], {"dim": 1, "keep": False})
case("max dim keep", "Max", lambda a, dim, keep: tuple(torch.max(a, dim, keepdim=keep)), [a234], {"dim": -1, "keep": True})
case("argmax", "Argmax", lambda a, dim, keep: a.argmax(dim, keepdim=keep), [a234], {"dim": 2, "keep": False})
case("log softmax", "LogSoftmax", lambda a, dim: F.log_softmax(a, dim), [a234], {"dim": -1})
case("softmax", "Softmax", lambda a, dim: F.softmax(a, dim), [a234], {"dim": 1})
case("norm p2 dim", "Norm", lambda a, p, dims, keep: a.norm(p, dims, keepdim=keep), [a234], {"p": 2.0, "dims": [1], "keep": True})
case("norm p1 all", "Norm", lambda a, p, dims, keep: a.norm(p), [a234], {"p": 1.0, "dims": None, "keep": False})
case("normalize", "Normalize", lambda a, p, dim, eps: F.normalize(a, p, dim, eps), [a234], {"p": 2.0, "dim": 2, "eps": 1e-12})
case("normalize zero row", "Normalize", lambda a, p, dim, eps: F.normalize(a, p, dim, eps),
     [torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 2.0]])], {"p": 2.0, "dim": 1, "eps": 1e-12})

# ---- losses ----
logits, hard = rn(5, 4), torch.tensor([0, 3, 1, 1, 2])
soft = F.softmax(rn(5, 4), 1)
red = {"mean": 0, "sum": 1, "none": 2}
for r in ["mean", "sum", "none"]:
    case("cross entropy hard " + r, "CrossEntropy",
         lambda x, t, ls, red, r=r: F.cross_entropy(x, t, label_smoothing=ls, reduction=r),
         [logits, hard], {"ls": 0.0, "red": red[r]})
case("cross entropy hard smoothing", "CrossEntropy", lambda x, t, ls, red: F.cross_entropy(x, t, label_smoothing=ls),
     [logits, hard], {"ls": 0.1, "red": 0})
case("cross entropy soft", "CrossEntropy", lambda x, t, ls, red: F.cross_entropy(x, t, label_smoothing=ls),
     [logits, soft], {"ls": 0.0, "red": 0}, grad=[True, True])
case("cross entropy soft smoothing none", "CrossEntropy",
     lambda x, t, ls, red: F.cross_entropy(x, t, label_smoothing=ls, reduction="none"),
     [logits, soft], {"ls": 0.2, "red": 2}, grad=[True, False])
case("cross entropy spatial", "CrossEntropy", lambda x, t, ls, red: F.cross_entropy(x, t, label_smoothing=ls),
     [rn(2, 3, 2, 2), torch.randint(0, 3, (2, 2, 2), generator=gen)], {"ls": 0.05, "red": 0})

# ---- indexing and joining ----
case("gather", "Gather", lambda a, idx, dim: a.gather(dim, idx), [rn(3, 5), torch.tensor([[0, 4], [2, 2], [1, 3]])], {"dim": 1})
case("index select", "IndexSelect", lambda a, idx, dim: a.index_select(dim, idx), [rn(4, 3), torch.tensor([3, 0, 0])], {"dim": 0})
case("cat", "Cat", lambda a, b, dim: torch.cat([a, b], dim), [rn(2, 3), rn(4, 3)], {"dim": 0})
case("stack", "Stack", lambda a, b, dim: torch.stack([a, b], dim), [rn(2, 3), rn(2, 3)], {"dim": 1})
case("einsum outer", "Einsum", lambda a, b, eq: torch.einsum(eq, a, b), [rn(3, 4), rn(3, 5)], {"eq": "bi,bj->bij"})
case("einsum matmul", "Einsum", lambda a, b, eq: torch.einsum(eq, a, b), [rn(3, 4), rn(4, 2)], {"eq": "ij,jk->ik"})
case("one hot", "OneHot", lambda idx, n: F.one_hot(idx, n), [torch.tensor([0, 2, 1, 2])], {"n": 4})
case("flip", "Flip", lambda a, dims: a.flip(dims), [rn(2, 3, 4)], {"dims": [2]})
case("reflect pad", "ReflectPad2d", lambda x, l, r, t, b: F.pad(x, (l, r, t, b), mode="reflect"), [rn(1, 2, 4, 5)],
     {"l": 2, "r": 1, "t": 1, "b": 3})

# ---- views and conversion ----
case("reshape", "Reshape", lambda a, shape: a.reshape(shape), [a234], {"shape": [4, -1]})
case("transpose", "Transpose", lambda a, d0, d1: a.transpose(d0, d1), [a234], {"d0": 0, "d1": 2})
case("permute", "Permute", lambda a, dims: a.permute(dims), [a234], {"dims": [2, 0, 1]})
case("narrow", "Narrow", lambda a, dim, start, length: a.narrow(dim, start, length), [a234], {"dim": 2, "start": 1, "length": 2})
case("squeeze", "Squeeze", lambda a, dim: a.squeeze(dim), [rn(3, 1, 2)], {"dim": 1})
case("unsqueeze", "Unsqueeze", lambda a, dim: a.unsqueeze(dim), [rn(3, 2)], {"dim": -1})
case("flatten", "Flatten", lambda a, start, end: a.flatten(start, end), [a234], {"start": 1, "end": -1})
case("to float64", "ToDType", lambda a, dtype: a.to(torch.float64), [a34], {"dtype": "float64"})
case("matmul batched", "Matmul", torch.matmul, [rn(2, 3, 4), rn(4, 5)])
case("contiguous of transpose", "ContiguousT", lambda a: a.t().contiguous(), [a34])

# ---- neural-network layers ----
x = rn(2, 3, 7, 7)
case("conv2d stride1 pad1 bias", "Conv2d", lambda x, w, b, stride, padding: F.conv2d(x, w, b, stride, padding),
     [x, rn(4, 3, 3, 3) * 0.3, rn(4)], {"stride": 1, "padding": 1})
case("conv2d stride2 pad0 nobias", "Conv2d", lambda x, w, stride, padding: F.conv2d(x, w, None, stride, padding),
     [x, rn(5, 3, 3, 3) * 0.3], {"stride": 2, "padding": 0})
case("conv2d stride2 pad2", "Conv2d", lambda x, w, b, stride, padding: F.conv2d(x, w, b, stride, padding),
     [x, rn(2, 3, 5, 5) * 0.3, rn(2)], {"stride": 2, "padding": 2})
case("linear bias", "Linear", F.linear, [rn(5, 4), rn(3, 4), rn(3)])
case("linear nobias", "Linear", F.linear, [rn(2, 5, 4), rn(3, 4)])
case("avg pool", "AvgPool2d", lambda x, k, s, p: F.avg_pool2d(x, k, s, p), [x], {"k": 3, "s": 2, "p": 1})
case("max pool", "MaxPool2d", lambda x, k, s, p: F.max_pool2d(x, k, s, p), [x], {"k": 2, "s": 2, "p": 0})
case("adaptive avg pool", "AdaptiveAvgPool2d", lambda x, oh, ow: F.adaptive_avg_pool2d(x, (oh, ow)), [x], {"oh": 3, "ow": 2})
case("dropout eval", "Dropout", lambda x, p, train, seed: F.dropout(x, p, train), [a34], {"p": 0.5, "train": False, "seed": 0})


def dropout_seeded(x, p, train, seed):
    torch.manual_seed(seed)
    return F.dropout(x, p, train)


case("dropout train seeded", "Dropout", dropout_seeded, [rn(4, 8)], {"p": 0.3, "train": True, "seed": 7})


def bn(x, w, b, rm, rv, train, momentum, eps):
    rm, rv = rm.detach().clone(), rv.detach().clone()
    y = F.batch_norm(x, rm, rv, w, b, train, momentum, eps)
    return y, rm, rv


bnx = rn(4, 3, 2, 2) * 2 + 1
case("batch norm train", "BatchNorm", bn, [bnx, rn(3), rn(3), rn(3), pos(3)],
     {"train": True, "momentum": 0.1, "eps": 1e-5}, grad=[True, True, True, False, False])
case("batch norm eval", "BatchNorm", bn, [bnx, rn(3), rn(3), rn(3), pos(3)],
     {"train": False, "momentum": 0.1, "eps": 1e-5}, grad=[True, True, True, False, False])
case("batch norm train no affine no stats", "BatchNormBare",
     lambda x, train, momentum, eps: F.batch_norm(x, None, None, None, None, train, momentum, eps),
     [rn(6, 2)], {"train": True, "momentum": 0.1, "eps": 1e-5})

# ---- creation and random ----
case("zeros", "Zeros", lambda shape: torch.zeros(shape), [], {"shape": [2, 3]})
case("ones", "Ones", lambda shape, dtype: torch.ones(shape, dtype=getattr(torch, dtype)), [], {"shape": [3], "dtype": "float64"})
case("full", "Full", lambda shape, v: torch.full(shape, v), [], {"shape": [2, 2], "v": 2.5})
case("arange", "Arange", lambda n: torch.arange(n), [], {"n": 5})
case("randn generator", "Randn", lambda shape, seed: torch.randn(shape, generator=torch.Generator().manual_seed(seed)),
     [], {"shape": [3, 5], "seed": 42})
case("rand generator", "Rand", lambda shape, seed: torch.rand(shape, generator=torch.Generator().manual_seed(seed)),
     [], {"shape": [17], "seed": 3})
case("randint generator", "RandInt",
     lambda shape, seed, low, high: torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed)),
     [], {"shape": [10], "seed": 9, "low": -3, "high": 4})


def randn_default(shape, seed):
    torch.manual_seed(seed)
    return torch.randn(shape)


case("randn default seeded", "RandnDefault", randn_default, [], {"shape": [6], "seed": 11})

# ---- input gradient via torch.autograd.grad ----
gx, gw1, gw2 = rn(4, 5), rn(6, 5) * 0.5, rn(3, 6) * 0.5
gxr = gx.clone().requires_grad_(True)
energy = torch.logsumexp(F.linear(torch.tanh(F.linear(gxr, gw1)), gw2), 1)
(gin,) = torch.autograd.grad(energy, [gxr], grad_outputs=torch.ones_like(energy))
gradients = {"x": enc(gx), "w1": enc(gw1), "w2": enc(gw2), "energy": enc(energy), "grad": enc(gin)}

# ---- optimizer trajectories ----


def trajectory(kind, cfg, steps=6):
    g = torch.Generator().manual_seed(99)
    w0 = torch.randn(4, 3, generator=g)
    b0 = torch.randn(4, generator=g)
    xs = torch.randn(8, 3, generator=g)
    ys = torch.randn(8, 4, generator=g)
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    if kind == "adam":
        opt = torch.optim.Adam([w, b], lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                               weight_decay=cfg["wd"])
    else:
        opt = torch.optim.SGD([w, b], lr=cfg["lr"], momentum=cfg["momentum"], dampening=cfg["dampening"],
                              weight_decay=cfg["wd"], nesterov=cfg["nesterov"])
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = (torch.tanh(F.linear(xs, w, b)) - ys).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    st = opt.state_dict()["state"]
    state = {}
    for i in st:
        for k, v in st[i].items():
            if torch.is_tensor(v):
                state["state.%d.%s" % (i, k)] = enc(v.reshape(v.shape).float() if k == "step" else v)
    return {"kind": kind, "cfg": cfg, "steps": steps, "w0": enc(w0), "b0": enc(b0), "x": enc(xs), "y": enc(ys),
            "losses": losses, "w": enc(w), "b": enc(b), "state": state}


optim = [
    trajectory("adam", {"lr": 0.05, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "wd": 0.0}),
    trajectory("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "wd": 0.05}),
    trajectory("sgd", {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "wd": 0.0, "nesterov": False}),
    trajectory("sgd", {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "wd": 5e-4, "nesterov": False}),
    trajectory("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.0, "wd": 1e-3, "nesterov": True}),
    trajectory("sgd", {"lr": 0.05, "momentum": 0.5, "dampening": 0.1, "wd": 0.0, "nesterov": False}),
]

# Added after the trajectories so that the random inputs drawn above keep their values.
xp = rn(2, 3, 7, 9)
case("avg pool exclude pad", "AvgPool2dExcludePad",
     lambda x, k, s, p: F.avg_pool2d(x, k, s, p, count_include_pad=False), [xp], {"k": 3, "s": 1, "p": 1})
case("bilinear up", "InterpolateBilinear",
     lambda x, h, w, ac: F.interpolate(x, size=(h, w), mode="bilinear", align_corners=ac), [xp],
     {"h": 13, "w": 11, "ac": False})
case("bilinear down aligned", "InterpolateBilinear",
     lambda x, h, w, ac: F.interpolate(x, size=(h, w), mode="bilinear", align_corners=ac), [xp],
     {"h": 4, "w": 5, "ac": True})
case("conv2d 1x3 pad (0,1)", "Conv2dPadded",
     lambda x, w, stride, ph, pw: F.conv2d(x, w, None, stride, (ph, pw)), [xp, rn(4, 3, 1, 3) * 0.3],
     {"stride": 1, "ph": 0, "pw": 1})

with open(OUT + ".tmp", "w") as f:
    json.dump({"torch": torch.__version__, "threads": 1, "cases": cases, "gradients": gradients, "optim": optim},
              f, separators=(",", ":"), allow_nan=False)
os.replace(OUT + ".tmp", OUT)
print("wrote %s: %d op cases, %d optimizer trajectories, %d bytes" % (OUT, len(cases), len(optim), os.path.getsize(OUT)))
