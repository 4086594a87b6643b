#!/usr/bin/python3
"""PyTorch reference for hdge-torch's benchmark (`make bench`). Run with Debian's python3-torch,
which uses the same libtorch build as hdge-torch, so the two sides differ only in orchestration:

    /usr/bin/python3 reference.py --config '{"mode": "train", ...}'

It prints one JSON object on stdout. The harness (bench/cmd/hdgebench) writes this file out of
the Go binary and alternates its runs with the Go side's; see bench/README.md.

What it reproduces of the released HDGE code (forhaoliu/hybrid-discriminative-generative, on
wgrathwohl/JEM):
- the WideResNet of JEM (pre-activation blocks, LeakyReLU 0.2, stride on the second conv, 1x1 conv
  shortcut, biases everywhere, PyTorch default init; no normalisation, or batch norm), with the
  linear head applied and PyTorch state_dict names (so hdge-torch's weights load with strict=True);
- the HDGE objective exactly as model.HYM.joint computes it, including the B x C x K einsum, the
  queue of raw logits normalised on read and its K % B == 0 assertion, and the k-hot
  cross-entropy of utils.KHotCrossEntropyLoss;
- Adam (betas 0.9, 0.999);
- the training transforms of utils.get_data without torchvision or PIL: reflect pad 4, random
  crop, random horizontal flip, ToTensor, Normalize(0.5, 0.5), Gaussian noise sigma, applied per
  sample inside torch.utils.data.DataLoader workers, as torchvision transforms are.
Skipping PIL makes this loader cheaper than the released one, so the comparison is conservative.

Modes: train, stepratio, contrastive, pipeline, eval, parity (see each function).
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- process memory

def status_kib(field):
    """A field of /proc/self/status in KiB (VmRSS, VmHWM), or -1 where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


# ---------------------------------------------------------------- data

def reset_peak():
    """Restarts VmHWM at the current resident set (Linux >= 4.0); whether that worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _open(path):
    if os.path.exists(path):
        return open(path, "rb")
    if os.path.exists(path + ".gz"):
        return gzip.open(path + ".gz", "rb")
    raise FileNotFoundError(f"{path} (or {path}.gz) does not exist")


def read_idx(directory, split):
    prefix = "train" if split == "train" else "t10k"
    with _open(os.path.join(directory, f"{prefix}-images-idx3-ubyte")) as f:
        b = f.read()
    n, h, w = (int.from_bytes(b[4 * i:4 * i + 4], "big") for i in (1, 2, 3))
    images = np.frombuffer(b, np.uint8, n * h * w, 16).reshape(n, 1, h, w)
    with _open(os.path.join(directory, f"{prefix}-labels-idx1-ubyte")) as f:
        b = f.read()
    labels = np.frombuffer(b, np.uint8, n, 8).astype(np.int64)
    return images, labels


def read_cifar(directory, variant, split):
    if variant == 10:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
        label_bytes = 1
    else:
        names = ["train.bin"] if split == "train" else ["test.bin"]
        label_bytes = 2
    images, labels = [], []
    for name in names:
        with open(os.path.join(directory, name), "rb") as f:
            raw = np.frombuffer(f.read(), np.uint8)
        rec = raw.reshape(-1, label_bytes + 3072)
        labels.append(rec[:, label_bytes - 1].astype(np.int64))  # the fine label comes last
        images.append(rec[:, label_bytes:].reshape(-1, 3, 32, 32))
    return np.concatenate(images), np.concatenate(labels)


def load_dataset(spec):
    """spec: {"format": idx|cifar10|cifar100|npy, "dir": ..., "split": train|test}."""
    fmt, split = spec["format"], spec.get("split", "train")
    if fmt == "idx":
        return read_idx(spec["dir"], split)
    if fmt in ("cifar10", "cifar100"):
        return read_cifar(spec["dir"], 10 if fmt == "cifar10" else 100, split)
    if fmt == "npy":
        return np.load(spec["images"]), np.load(spec["labels"])
    raise ValueError(f"unknown dataset format {fmt!r}")


class TransformedSet(torch.utils.data.Dataset):
    """Per-sample transforms in the order of the released transform_train / transform_test."""

    def __init__(self, images, labels, crop, flip, sigma):
        # torchvision's datasets hold HWC uint8 arrays and hand PIL images to the transforms.
        self.images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        self.labels = labels
        self.crop, self.flip, self.sigma = crop, flip, sigma
        c = images.shape[1]
        self.mean = torch.full((c, 1, 1), 0.5)
        self.std = torch.full((c, 1, 1), 0.5)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i]
        h, w = img.shape[0], img.shape[1]
        if self.crop > 0:
            p = self.crop
            img = np.pad(img, ((p, p), (p, p), (0, 0)), mode="reflect")  # transforms.Pad(4, "reflect")
            top = int(torch.randint(0, img.shape[0] - h + 1, size=(1,)).item())  # RandomCrop
            left = int(torch.randint(0, img.shape[1] - w + 1, size=(1,)).item())
            img = img[top:top + h, left:left + w]
        if self.flip and torch.rand(1) < 0.5:  # RandomHorizontalFlip
            img = img[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous().float().div(255)  # ToTensor
        x = x.sub_(self.mean).div_(self.std)  # Normalize((0.5,)*c, (0.5,)*c)
        if self.sigma > 0:
            x = x + self.sigma * torch.randn_like(x)
        return x, int(self.labels[i])


def make_loader(images, labels, cfg, train=True):
    aug = cfg["augment"] if train else {"crop": 0, "flip": False, "noise": cfg["augment"]["noise"]}
    ds = TransformedSet(images, labels, aug["crop"], aug["flip"], aug["noise"])
    workers = cfg.get("workers", 2)
    return torch.utils.data.DataLoader(
        ds, batch_size=cfg["batch"] if train else cfg.get("eval_batch", 256), shuffle=train, drop_last=train,
        num_workers=workers, persistent_workers=workers > 0 and train)


def cycle(loader):
    while True:
        for b in loader:
            yield b


# ---------------------------------------------------------------- model (JEM's Wide_ResNet)

class Identity(nn.Module):
    def forward(self, x):
        return x


def get_norm(n_filters, norm):
    # JEM's get_norm gives BatchNorm2d momentum=0.9; hdge-torch keeps PyTorch's default 0.1. The
    # momentum changes the running statistics, not the cost.
    return Identity() if norm in (None, "none") else nn.BatchNorm2d(n_filters)


class WideBasic(nn.Module):
    def __init__(self, in_planes, planes, stride, norm=None, leak=0.2):
        super().__init__()
        self.lrelu = nn.LeakyReLU(leak)
        self.bn1 = get_norm(in_planes, norm)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=True)
        self.dropout = Identity()
        self.bn2 = get_norm(planes, norm)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=True))

    def forward(self, x):
        out = self.dropout(self.conv1(self.lrelu(self.bn1(x))))
        out = self.conv2(self.lrelu(self.bn2(out)))
        out += self.shortcut(x)
        return out


class WideResNet(nn.Module):
    def __init__(self, depth, width, num_classes, input_channels, norm=None, leak=0.2):
        super().__init__()
        assert (depth - 4) % 6 == 0, "Wide-resnet depth should be 6n+4"
        n = (depth - 4) // 6
        stages = [16, 16 * width, 32 * width, 64 * width]
        self.norm = norm
        self.in_planes = 16
        self.lrelu = nn.LeakyReLU(leak)
        self.conv1 = nn.Conv2d(input_channels, stages[0], kernel_size=3, stride=1, padding=1, bias=True)
        self.layer1 = self._wide_layer(stages[1], n, 1)
        self.layer2 = self._wide_layer(stages[2], n, 2)
        self.layer3 = self._wide_layer(stages[3], n, 2)
        self.bn1 = get_norm(stages[3], norm)
        self.linear = nn.Linear(stages[3], num_classes)

    def _wide_layer(self, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(WideBasic(self.in_planes, planes, s, self.norm))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = self.lrelu(self.bn1(out))
        # JEM's avg_pool2d(out, 8) on 32x32 inputs; the kernel is the map size so 28x28 works too.
        out = F.avg_pool2d(out, out.shape[-1])
        return self.linear(out.view(out.size(0), -1))


def parse_model(name):
    _, depth, width = name.split("-")
    return int(depth), int(width)


def build_model(cfg, classes, channels, device):
    depth, width = parse_model(cfg["model"])
    m = WideResNet(depth, width, classes, channels, cfg.get("norm", "none"))
    if cfg.get("weights"):
        m.load_state_dict(torch.load(cfg["weights"]), strict=True)
    return m.to(device)


# ---------------------------------------------------------------- HDGE, as the released code computes it

def smooth_one_hot(labels, classes, smoothing=0.0):
    assert 0 <= smoothing < 1
    with torch.no_grad():
        dist = torch.empty(size=(labels.size(0), classes), device=labels.device)
        dist.fill_(smoothing / (classes - 1))
        dist.scatter_(1, labels.data.unsqueeze(-1), 1.0 - smoothing)
    return dist


def khot_cross_entropy(pred, target):
    pred = pred.log_softmax(dim=-1)
    return torch.mean(torch.sum(-target * pred, dim=-1))


class Queue:
    """model.HYM's queue_logit buffer, _dequeue_and_enqueue and the contrastive part of joint()."""

    def __init__(self, classes, k, tau, device, queue=None):
        self.K, self.T = k, tau
        self.queue_logit = (queue if queue is not None else torch.randn(classes, k)).to(device)
        self.ptr = 0

    @torch.no_grad()
    def _dequeue_and_enqueue(self, logits):
        batch_size = logits.shape[0]
        ptr = self.ptr
        assert self.K % batch_size == 0  # for simplicity
        self.queue_logit[:, ptr:ptr + batch_size] = logits.T
        self.ptr = (ptr + batch_size) % self.K

    def joint(self, f_logit, dist, evaluation=False):
        prob = nn.functional.normalize(f_logit, dim=1)
        l_pos = dist * prob
        l_pos = torch.logsumexp(l_pos, dim=1, keepdim=True)
        buffer = nn.functional.normalize(self.queue_logit.clone().detach(), dim=0)
        l_neg = torch.einsum("nc,ck->nck", [dist, buffer])  # N x C x K
        l_neg = torch.logsumexp(l_neg, dim=1)
        logits = torch.cat([l_pos, l_neg], dim=1)
        logits /= self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        if not evaluation:
            self._dequeue_and_enqueue(f_logit)
        return logits, labels

    def loss(self, f_logit, dist, evaluation=False):
        out, target = self.joint(f_logit, dist, evaluation)
        return nn.CrossEntropyLoss(reduction="mean")(out, target)


class Objective:
    """ce: k-hot cross-entropy; hdge: alpha * CE + (1 - alpha) * the contrastive term."""

    def __init__(self, cfg, classes, device):
        self.kind, self.alpha, self.classes = cfg["objective"], cfg.get("alpha", 0.5), classes
        self.queue = Queue(classes, cfg["queue_size"], cfg.get("temperature", 0.1), device) if self.kind == "hdge" else None

    def __call__(self, logits, y, logits_joint=None):
        dist = smooth_one_hot(y, self.classes)
        ce = khot_cross_entropy(logits, dist)
        if self.queue is None:
            return ce, {"ce": ce}
        gen = self.queue.loss(logits if logits_joint is None else logits_joint, dist)
        return self.alpha * ce + (1 - self.alpha) * gen, {"ce": ce, "gen": gen}


def adam(model, lr):
    return torch.optim.Adam(model.parameters(), lr=lr, betas=[0.9, 0.999], weight_decay=0.0)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PRECISION = "fp32"  # set from the config: "bf16" runs the forward passes under torch.autocast


def forward(model, x):
    if PRECISION == "bf16":
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return model(x).float()
    return model(x)


def train_step(model, optim, objective, x, y, released_loop):
    """One step as train_wrn.py orders it: losses, their values, zero_grad, backward, step.
    released_loop adds the released loop's second forward pass (f.classify for the CE term and
    f.joint for the contrastive one)."""
    logits = forward(model, x)
    logits_joint = forward(model, x) if released_loop and objective.queue is not None else None
    loss, terms = objective(logits, y, logits_joint)
    values = {"loss": loss.item()}
    for k, v in terms.items():
        values["loss_" + k] = v.item()
    optim.zero_grad()
    loss.backward()
    optim.step()
    return values


# ---------------------------------------------------------------- modes

def mode_train(cfg, device):
    """The training loop of train_wrn.py: per-step wall time (batch wait included) and data wait."""
    images, labels = load_dataset(cfg["dataset"])
    classes = int(cfg.get("classes") or labels.max() + 1)
    torch.manual_seed(cfg.get("seed", 1))
    model = build_model(cfg, classes, images.shape[1], device)
    model.train()
    optim = adam(model, cfg.get("lr", 1e-4))
    objective = Objective(cfg, classes, device)
    released = cfg.get("released_loop", False)
    batches = cycle(make_loader(images, labels, cfg))
    # The released loop also draws an (unused) batch from a second loader every step.
    unused = cycle(make_loader(images, labels, cfg)) if released else None
    steps_total = cfg["warmup_steps"] + cfg["steps"]
    times, waits = [], []
    values = {}
    for step in range(steps_total):
        t0 = time.perf_counter()
        if unused is not None:
            next(unused)
        x, y = next(batches)
        t1 = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        values = train_step(model, optim, objective, x, y, released)
        sync(device)
        t2 = time.perf_counter()
        if step >= cfg["warmup_steps"]:
            times.append(t2 - t0)
            waits.append(t1 - t0)
    # A training run ends with a checkpoint, as hdge-torch's does.
    if cfg.get("checkpoint"):
        state = {"model": model.state_dict(), "optim": optim.state_dict()}
        if objective.queue is not None:
            state["queue"] = objective.queue.queue_logit
        torch.save(state, cfg["checkpoint"])
    return {"step_s": times, "wait_s": waits, "batch": cfg["batch"], "classes": classes, "final": values}


def mode_stepratio(cfg, device):
    """Alternates CE and HDGE steps of one model on a fixed random batch, so that machine load
    hits both alike; returns the step times of each."""
    torch.manual_seed(cfg.get("seed", 1))
    classes, b = cfg["classes"], cfg["batch"]
    c, h, w = cfg["shape"]
    model = build_model(cfg, classes, c, device)
    model.train()
    optim = adam(model, cfg.get("lr", 1e-4))
    ce = Objective(dict(cfg, objective="ce"), classes, device)
    hdge = Objective(dict(cfg, objective="hdge"), classes, device)
    x = torch.randn(b, c, h, w).to(device)
    y = torch.randint(0, classes, (b,)).to(device)
    out = {"ce_s": [], "hdge_s": []}
    for i in range(cfg["warmup_steps"] + cfg["steps"]):
        for name, obj in (("ce", ce), ("hdge", hdge)) if i % 2 == 0 else (("hdge", hdge), ("ce", ce)):
            t0 = time.perf_counter()
            train_step(model, optim, obj, x, y, False)
            sync(device)
            if i >= cfg["warmup_steps"]:
                out[name + "_s"].append(time.perf_counter() - t0)
    return out


def mode_contrastive(cfg, device):
    """The contrastive term alone, as the released code computes it: forward on B x C logits with
    a full C x K queue, backward to the logits, enqueue. Memory: resident set before the queue
    exists (rss0), once it and the inputs exist (rss1), and the high-water mark after the steps."""
    classes, k, b = cfg["classes"], cfg["queue_size"], cfg["batch"]
    g = torch.Generator().manual_seed(cfg.get("seed", 1))
    if device.type == "cuda":
        torch.cuda.init()
    rss0 = status_kib("VmRSS")
    logits = (torch.randn(b, classes, generator=g) * 3).to(device).requires_grad_(True)
    y = torch.randint(0, classes, (b,), generator=g).to(device)
    q = Queue(classes, k, cfg.get("temperature", 0.1), device, torch.randn(classes, k, generator=g))
    sync(device)
    peak_reset = reset_peak()
    rss1 = status_kib("VmRSS")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for i in range(cfg["warmup_steps"] + cfg["steps"]):
        t0 = time.perf_counter()
        dist = smooth_one_hot(y, classes)
        loss = q.loss(logits, dist)
        loss.backward()
        logits.grad = None
        sync(device)
        if i >= cfg["warmup_steps"]:
            times.append(time.perf_counter() - t0)
    out = {"step_s": times, "rss0_kib": rss0, "rss1_kib": rss1, "hwm_kib": status_kib("VmHWM"), "loss": loss.item(),
           "peak_reset": peak_reset}
    if device.type == "cuda":
        out["device_peak_bytes"] = torch.cuda.max_memory_allocated(device) - base
    return out


def mode_pipeline(cfg, device):
    """The training data loader alone: batches per second after warm-up batches."""
    images, labels = load_dataset(cfg["dataset"])
    torch.manual_seed(cfg.get("seed", 1))
    batches = cycle(make_loader(images, labels, cfg))
    for _ in range(cfg["warmup_batches"]):
        next(batches)
    n = 0
    t0 = time.perf_counter()
    for _ in range(cfg["batches"]):
        x, y = next(batches)
        n += len(y)
    el = time.perf_counter() - t0
    return {"images": n, "seconds": el}


def ece(conf, correct, bins=20):
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def ood_metrics(s_in, s_out):
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
    scores = np.concatenate([s_in, s_out])
    is_in = np.concatenate([np.ones(len(s_in)), np.zeros(len(s_out))])
    fpr, tpr, _ = roc_curve(is_in, scores, drop_intermediate=False)
    return {
        "auroc": float(roc_auc_score(is_in, scores)),
        "aupr_in": float(average_precision_score(is_in, scores)),
        "aupr_out": float(average_precision_score(1 - is_in, -scores)),
        "fpr95": float(fpr[np.argmax(tpr >= 0.95)]),
    }


def mode_eval(cfg, device):
    """eval_wrn.py's OOD protocol: logits of the test set and of each OOD set (test-time noise,
    batch 256, eval mode, no grad), then accuracy, NLL, ECE (20 bins) and, per OOD set and score
    (log q(x), max p(y|x)), AUROC, AUPR-in/out and FPR at 95% TPR with scikit-learn. Reading the
    sets is not timed."""
    sets = [(s["name"], load_dataset(s)) for s in cfg["sets"]]
    classes = cfg["classes"]
    torch.manual_seed(cfg.get("seed", 1))
    model = build_model(cfg, classes, sets[0][1][0].shape[1], device)
    model.eval()
    import sklearn.metrics  # noqa: F401  (imported before the clock starts, like Go's packages)
    t0 = time.perf_counter()
    logits = {}
    with torch.no_grad():
        for name, (images, labels) in sets:
            out = []
            for x, _ in make_loader(images, labels, cfg, train=False):
                out.append(model(x.to(device)).float().cpu())
            logits[name] = torch.cat(out).double()
    t1 = time.perf_counter()
    in_name, (_, in_labels) = sets[0][0], sets[0][1]
    lin = logits[in_name]
    lsm = lin.log_softmax(1)
    labels = torch.from_numpy(in_labels)
    conf, pred = lsm.exp().max(1)
    correct = (pred == labels).numpy()
    metrics = {"accuracy": float(correct.mean()), "nll": float(-lsm.gather(1, labels[:, None]).mean()),
               "ece": ece(conf.numpy(), correct.astype(np.float64))}
    scores = {n: {"logqx": l.logsumexp(1).numpy(), "maxprob": l.softmax(1).max(1)[0].numpy()} for n, l in logits.items()}
    for name, _ in sets[1:]:
        for score in ("logqx", "maxprob"):
            metrics[f"{name}/{score}"] = ood_metrics(scores[in_name][score], scores[name][score])
    t2 = time.perf_counter()
    n = sum(len(s[1][1]) for s in sets)
    return {"images": n, "logits_s": t1 - t0, "metrics_s": t2 - t1, "metrics": metrics}


def mode_parity(cfg, device):
    """Logits and the HDGE loss for hdge-torch's weights, inputs and queue (written by the Go side),
    for the harness to compare with hdge-torch's own values."""
    t = torch.load(cfg["inputs"])
    classes = cfg["classes"]
    model = build_model(cfg, classes, t["x"].shape[1], device)
    model.eval()
    x, y = t["x"].to(device), t["y"].to(device)
    logits = model(x)
    dist = smooth_one_hot(y, classes)
    q = Queue(classes, t["queue"].shape[1], cfg.get("temperature", 0.1), device, t["queue"].clone())
    alpha = cfg.get("alpha", 0.5)
    ce = khot_cross_entropy(logits, dist)
    gen = q.loss(logits, dist, evaluation=True)
    loss = alpha * ce + (1 - alpha) * gen
    return {"logits": logits.detach().cpu().flatten().tolist(), "loss": loss.item(), "ce": ce.item(), "gen": gen.item()}


def finite(v):
    """NaN and infinities as null: JSON has no spelling for them."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(x) for x in v]
    return v


MODES = {"train": mode_train, "stepratio": mode_stepratio, "contrastive": mode_contrastive,
         "pipeline": mode_pipeline, "eval": mode_eval, "parity": mode_parity}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the run's configuration as a JSON object")
    args = p.parse_args()
    try:
        cfg = json.loads(args.config)
    except json.JSONDecodeError as e:
        sys.exit(f"--config: not JSON: {e}")
    mode = cfg.get("mode")
    if mode not in MODES:
        sys.exit(f"--config: unknown mode {mode!r} (want one of {', '.join(MODES)})")
    torch.set_num_threads(int(cfg.get("threads", 1)))
    global PRECISION
    PRECISION = cfg.get("precision") or "fp32"
    device = torch.device(cfg.get("device", "cpu"))
    out = MODES[mode](cfg, device)
    out.update({"threads": torch.get_num_threads(), "torch": torch.__version__,
                "python": sys.version.split()[0], "hwm_kib_end": status_kib("VmHWM")})
    print(json.dumps(finite(out)))


if __name__ == "__main__":
    main()
