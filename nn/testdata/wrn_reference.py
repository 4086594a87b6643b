"""The PyTorch WideResNet that hdge-torch's nn.WideResNet mirrors (JEM's Wide_ResNet with its linear
head applied and global average pooling), used to check that a Go checkpoint loads here with the same
names and gives the same logits.

    /usr/bin/python3 wrn_reference.py CHECK FILE.pt DEPTH WIDTH NORM CHANNELS CLASSES

FILE.pt holds {"state_dict", "input", "logits"} written by the Go test; the script loads the state dict
strictly, runs the input in eval mode and exits non-zero if the logits differ.
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


def norm_layer(n, norm):
    return nn.BatchNorm2d(n) if norm == "batch" else nn.Identity()


class WideBasic(nn.Module):
    def __init__(self, in_planes, planes, dropout, stride, norm, leak=0.2):
        super().__init__()
        self.lrelu = nn.LeakyReLU(leak)
        self.bn1 = norm_layer(in_planes, norm)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn2 = norm_layer(planes, norm)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=True))

    def forward(self, x):
        out = self.dropout(self.conv1(self.lrelu(self.bn1(x))))
        out = self.conv2(self.lrelu(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    def __init__(self, depth, width, num_classes=10, input_channels=3, norm=None, dropout=0.0, leak=0.2):
        super().__init__()
        n = (depth - 4) // 6
        stages = [16, 16 * width, 32 * width, 64 * width]
        self.lrelu = nn.LeakyReLU(leak)
        self.conv1 = nn.Conv2d(input_channels, stages[0], kernel_size=3, padding=1, bias=True)
        in_planes = stages[0]
        layers = []
        for i, stride in enumerate([1, 2, 2]):
            blocks = []
            for b in range(n):
                blocks.append(WideBasic(in_planes, stages[i + 1], dropout, stride if b == 0 else 1, norm))
                in_planes = stages[i + 1]
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.bn1 = norm_layer(stages[3], norm)
        self.linear = nn.Linear(stages[3], num_classes)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = self.lrelu(self.bn1(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def check(path, depth, width, norm, channels, classes):
    blob = torch.load(path)
    model = WideResNet(depth, width, classes, channels, norm)
    state = {k[len("state_dict."):]: v for k, v in blob.items() if k.startswith("state_dict.")}
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        got = model(blob["input"])
    want = blob["logits"]
    diff = (got - want).abs().max().item()
    scale = want.abs().max().item()
    print(f"max |diff| {diff:.3g} (logits up to {scale:.3g})")
    if diff > 1e-4 * max(scale, 1.0):
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "CHECK":
        check(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), int(sys.argv[7]))
