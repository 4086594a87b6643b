"""The model layout of the JEM and HDGE authors' released code, written from its description for
the key-mapping tests (not a copy of that code): a WideResNet trunk that returns pooled features
and keeps an unused Linear of its own, and the wrapper F with the class head, an unused energy
head and HDGE's queue of past logits as buffers. Checkpoints are {"model_state_dict",
"replay_buffer"}, as JEM's eval_wrn_ebm.py reads them.

    released_model.py CHECK ckpt io depth width norm channels classes queue trunk_head
        load ckpt strictly into F and compare its logits, queue and buffer with io's
    released_model.py MAKE ckpt io depth width norm channels classes queue trunk_head
        save a randomly initialised F as ckpt and its input, logits, queue and buffer as io
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F_


def norm(n, kind):
    return nn.BatchNorm2d(n, momentum=0.9) if kind == "batch" else nn.Identity()


class Block(nn.Module):
    def __init__(self, cin, cout, stride, kind, leak=0.2):
        super().__init__()
        self.lrelu = nn.LeakyReLU(leak)
        self.bn1 = norm(cin, kind)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=True)
        self.bn2 = norm(cout, kind)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=True))

    def forward(self, x):
        h = self.conv1(self.lrelu(self.bn1(x)))
        h = self.conv2(self.lrelu(self.bn2(h)))
        return h + self.shortcut(x)


class Trunk(nn.Module):
    """WideResNet-depth-width without its head: forward gives the pooled features."""

    def __init__(self, depth, width, channels, kind, trunk_head, leak=0.2):
        super().__init__()
        n = (depth - 4) // 6
        stages = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(channels, stages[0], 3, padding=1, bias=True)
        cin = stages[0]
        for i, (cout, stride) in enumerate(zip(stages[1:], [1, 2, 2])):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(Block(cin, cout, s, kind, leak))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn1 = norm(stages[3], kind)
        self.lrelu = nn.LeakyReLU(leak)
        self.last_dim = stages[3]
        if trunk_head > 0:
            self.linear = nn.Linear(stages[3], trunk_head)  # built, never applied

    def forward(self, x):
        h = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        h = self.lrelu(self.bn1(h))
        return F_.avg_pool2d(h, 8).flatten(1)  # 32×32 inputs end at 8×8


class F(nn.Module):
    def __init__(self, depth, width, channels, kind, classes, queue, trunk_head):
        super().__init__()
        self.f = Trunk(depth, width, channels, kind, trunk_head)
        self.energy_output = nn.Linear(self.f.last_dim, 1)
        self.class_output = nn.Linear(self.f.last_dim, classes)
        if queue > 0:
            self.register_buffer("queue_logit", torch.randn(classes, queue))
            self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def classify(self, x):
        return self.class_output(self.f(x))


def build(args):
    depth, width, kind, channels, classes, queue, trunk_head = int(args[0]), int(args[1]), args[2], int(args[3]), int(args[4]), int(args[5]), int(args[6])
    return F(depth, width, channels, kind, classes, queue, trunk_head), channels


def check(ckpt_path, io_path, args):
    model, _ = build(args)
    ckpt = torch.load(ckpt_path)
    model.load_state_dict(ckpt["model_state_dict"], strict=True)
    io = torch.load(io_path)
    model.eval()
    with torch.no_grad():
        got = model.classify(io["input"])
    diff = (got - io["logits"]).abs().max().item()
    print(f"max |diff| {diff:.3g}")
    ok = diff <= 1e-4 * max(io["logits"].abs().max().item(), 1.0)
    if hasattr(model, "queue_logit"):
        ok = ok and torch.equal(model.queue_logit, io["queue"]) and model.queue_ptr.item() == io["ptr"].item()
    if "buffer" in io:
        ok = ok and torch.equal(ckpt["replay_buffer"], io["buffer"])
    sys.exit(0 if ok else 1)


def make(ckpt_path, io_path, args):
    torch.manual_seed(5)
    model, channels = build(args)
    x = torch.randn(3, channels, 32, 32)
    if args[2] == "batch":
        model.train()
        for i in range(3):
            model.classify(x + i)
    if hasattr(model, "queue_logit"):
        model.queue_ptr.fill_(7)
    model.eval()
    with torch.no_grad():
        logits = model.classify(x)
    buffer = torch.rand(4, channels, 32, 32) * 2 - 1
    torch.save({"model_state_dict": model.state_dict(), "replay_buffer": buffer}, ckpt_path)
    io = {"input": x, "logits": logits, "buffer": buffer}
    if hasattr(model, "queue_logit"):
        io["queue"], io["ptr"] = model.queue_logit, model.queue_ptr
    torch.save(io, io_path)


if __name__ == "__main__":
    {"CHECK": check, "MAKE": make}[sys.argv[1]](sys.argv[2], sys.argv[3], sys.argv[4:])
