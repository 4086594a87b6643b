"""The PyTorch model that hdge-torch's nn.ResNet mirrors: torchvision's resnet18 / resnet50 with the
CIFAR stem (conv1 a 3x3 stride-1 conv without bias, maxpool an Identity). Used to check that a Go
state dict loads here strictly and gives the same logits in training and evaluation mode.

    /usr/bin/python3 resnet_reference.py CHECK FILE.pt DEPTH CHANNELS CLASSES [FILE.pt DEPTH CHANNELS CLASSES ...]

FILE.pt, written by the Go test, holds "input", "before.<name>" (the state dict before a
training-mode pass), "logits_train" (that pass), "after.<name>" (the state dict after it, running
statistics updated) and "logits_eval" (an evaluation-mode pass with it). The script loads
"before", runs the same passes, and exits non-zero when logits or updated statistics differ.
"""
import sys
import warnings

import torch
import torch.nn as nn

warnings.filterwarnings("ignore")
import torchvision  # noqa: E402


def cifar_resnet(depth, channels, classes):
    model = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth](num_classes=classes)
    model.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def state(blob, prefix):
    return {k[len(prefix):]: v for k, v in blob.items() if k.startswith(prefix)}


def close(what, got, want, tol):
    diff = (got.double() - want.double()).abs().max().item()
    scale = want.double().abs().max().item()
    print(f"{what}: max |diff| {diff:.3g} (values up to {scale:.3g})")
    return diff <= tol * max(scale, 1.0)


def check(path, depth, channels, classes):
    blob = torch.load(path)
    model = cifar_resnet(depth, channels, classes)
    model.load_state_dict(state(blob, "before."), strict=True)
    x = blob["input"]
    ok = True
    model.train()
    with torch.no_grad():
        ok &= close("train logits", model(x), blob["logits_train"], 1e-4)
    after = state(blob, "after.")
    worst = 0.0
    for name, t in model.state_dict().items():
        if name.endswith("running_mean") or name.endswith("running_var"):
            diff = (t.double() - after[name].double()).abs().max().item()
            worst = max(worst, diff / max(after[name].abs().max().item(), 1.0))
        elif name.endswith("num_batches_tracked") and int(t) != int(after[name]):
            print(f"{name}: {int(t)} vs {int(after[name])}")
            ok = False
    print(f"running statistics: worst relative diff {worst:.3g}")
    ok &= worst <= 1e-4
    model.eval()
    with torch.no_grad():
        ok &= close("eval logits", model(x), blob["logits_eval"], 1e-4)
    return ok


if __name__ == "__main__":
    if sys.argv[1] == "CHECK":
        args, ok = sys.argv[2:], True
        for i in range(0, len(args), 4):
            print(f"{args[i]}: resnet-{args[i + 1]}, {args[i + 2]} channels, {args[i + 3]} classes")
            ok &= check(args[i], int(args[i + 1]), int(args[i + 2]), int(args[i + 3]))
        sys.exit(0 if ok else 1)
