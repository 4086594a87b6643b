#!/usr/bin/python3
"""Writes PIL goldens for data.Convert from the first 8 test images of CIFAR-10 and MNIST.

PIL's convert("L") and BILINEAR resize (antialiased when shrinking) are what torchvision used for
such OOD conversions. Outputs are CHW uint8. Usage (from this folder):
    /usr/bin/python3 make_resize_goldens.py SHARED_DATA_DIR
"""
import gzip
import sys

import numpy as np
from PIL import Image

shared = sys.argv[1]
raw = np.fromfile(f"{shared}/cifar-10-batches-bin/test_batch.bin", dtype=np.uint8, count=8 * 3073)
cifar = raw.reshape(8, 3073)[:, 1:].reshape(8, 3, 32, 32).transpose(0, 2, 3, 1)  # NHWC
with gzip.open(f"{shared}/mnist/t10k-images-idx3-ubyte.gz") as f:
    mnist = np.frombuffer(f.read(), dtype=np.uint8, offset=16)[: 8 * 784].reshape(8, 28, 28)


def chw(im):
    a = np.asarray(im)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


out = {
    "golden_cifar_gray28.bin": [chw(Image.fromarray(x).convert("L").resize((28, 28), Image.BILINEAR)) for x in cifar],
    "golden_cifar_rgb28.bin": [chw(Image.fromarray(x).resize((28, 28), Image.BILINEAR)) for x in cifar],
    "golden_mnist_rgb32.bin": [chw(Image.fromarray(x).convert("RGB").resize((32, 32), Image.BILINEAR)) for x in mnist],
}
for name, imgs in out.items():
    np.stack(imgs).astype(np.uint8).tofile(name)
