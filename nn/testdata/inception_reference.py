#!/usr/bin/python3
"""Reference for nn.InceptionV3: torchvision's inception_v3 patched into pytorch-fid's FID network.

    /usr/bin/python3 inception_reference.py WEIGHTS.pt INPUT.pt OUT.pt

WEIGHTS.pt is a state dict (Go's random weights), INPUT.pt holds {"x": images in [0, 1]}. Writes
{"pool": pool_3 features [N, 2048], "logits": [N, 1008]} computed as pytorch-fid's
InceptionV3(resize_input=True, normalize_input=True) does, with the fc layer applied to pool_3.
The FID blocks are written here from pytorch-fid's description: the average-pooling branches of
the A, C and first E blocks leave the padding out of the count, and the last E block's pool branch
is a 3x3 max pool.
"""
import sys

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import inception as tvi


class FIDInceptionA(tvi.InceptionA):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b5, b3, bp], 1)


class FIDInceptionC(tvi.InceptionC):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_2(bd)
        bd = self.branch7x7dbl_3(bd)
        bd = self.branch7x7dbl_4(bd)
        bd = self.branch7x7dbl_5(bd)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b7, bd, bp], 1)


class FIDInceptionE(tvi.InceptionE):
    def __init__(self, in_channels, max_pool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.max_pool:
            bp = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            bp = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([b1, b3, bd, self.branch_pool(bp)], 1)


def fid_inception_v3():
    net = torchvision.models.inception_v3(weights=None, init_weights=False, aux_logits=False, num_classes=1008)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE(1280, max_pool=False)
    net.Mixed_7c = FIDInceptionE(2048, max_pool=True)
    return net.eval()


def main():
    weights, inp, out = sys.argv[1:4]
    torch.set_num_threads(1)
    net = fid_inception_v3()
    net.load_state_dict(torch.load(weights), strict=True)
    x = torch.load(inp)["x"]
    with torch.no_grad():
        h = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        h = 2 * h - 1
        for name in ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"]:
            h = getattr(net, name)(h)
        pool = torch.flatten(h, 1)
        logits = net.fc(pool)
    torch.save({"pool": pool.contiguous(), "logits": logits.contiguous()}, out)


if __name__ == "__main__":
    main()
