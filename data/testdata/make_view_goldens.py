"""Goldens for the contrastive view transforms of data/views.go, from torchvision 0.14's tensor
functions (Debian's python3-torchvision) on a fixed float image in [0, 1].

    /usr/bin/python3 make_view_goldens.py > view_goldens.json

The image is C x 4 x 5 with pixel k = ((k * 37 + 11) % 256) / 255, the same formula as the Go test.
"""
import json
import warnings

import torch

warnings.filterwarnings("ignore")
import torchvision.transforms.functional as F  # noqa: E402


def image(c):
    k = torch.arange(c * 4 * 5, dtype=torch.float64)
    return (((k * 37 + 11) % 256) / 255).to(torch.float32).reshape(c, 4, 5)


def flat(t):
    return [float(v) for v in t.reshape(-1)]


cases = []
rgb, grey = image(3), image(1)
for name, c, fn in [
    ("brightness 1.3", 3, lambda x: F.adjust_brightness(x, 1.3)),
    ("brightness 0.6", 1, lambda x: F.adjust_brightness(x, 0.6)),
    ("contrast 0.6", 3, lambda x: F.adjust_contrast(x, 0.6)),
    ("contrast 1.4", 1, lambda x: F.adjust_contrast(x, 1.4)),
    ("saturation 1.4", 3, lambda x: F.adjust_saturation(x, 1.4)),
    ("saturation 0.3", 3, lambda x: F.adjust_saturation(x, 0.3)),
    ("hue 0.25", 3, lambda x: F.adjust_hue(x, 0.25)),
    ("hue -0.1", 3, lambda x: F.adjust_hue(x, -0.1)),
    ("hue 0.5", 3, lambda x: F.adjust_hue(x, 0.5)),
    ("grayscale", 3, lambda x: F.rgb_to_grayscale(x, num_output_channels=3)),
    # top 1, left 0, height 3, width 4, resized back to 4x5, bilinear without antialias
    ("resized crop 1 0 3 4", 3, lambda x: F.resized_crop(x, 1, 0, 3, 4, [4, 5], antialias=False)),
    ("resized crop 0 2 2 2", 1, lambda x: F.resized_crop(x, 0, 2, 2, 2, [4, 5], antialias=False)),
]:
    x = rgb if c == 3 else grey
    cases.append({"name": name, "c": c, "want": flat(fn(x.clone()))})
print(json.dumps({"torchvision": __import__("torchvision").__version__, "cases": cases}, indent=1))
