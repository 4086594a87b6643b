"""Round trip of `hdge-torch export --format released` through the released model layout
(model/released/testdata/released_model.py): load the exported file strictly into F, save F's
logits for a batch of images, and save F's own checkpoint for hdge-torch to read back.

    released_roundtrip.py EXPORTED IMAGES.npy LOGITS.npy RESAVED depth width norm channels classes queue

IMAGES.npy holds uint8 images N×H×W (grey) or N×C×H×W, mapped to [-1, 1] as hdge-torch does.
The released trunk pools 8×8 (32×32 inputs); for other sizes it is swapped for a global average
pool, the same operation at 32×32, so 28×28 test models can be checked too.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F_

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "model", "released", "testdata"))
import released_model  # noqa: E402


def pooled_forward(self, x):
    h = self.layer3(self.layer2(self.layer1(self.conv1(x))))
    h = self.lrelu(self.bn1(h))
    return F_.adaptive_avg_pool2d(h, 1).flatten(1)


def main(exported, images, logits_out, resaved, *args):
    depth, width, norm, channels, classes, queue = int(args[0]), int(args[1]), args[2], int(args[3]), int(args[4]), int(args[5])
    model = released_model.F(depth, width, channels, norm, classes, queue, 10)
    ckpt = torch.load(exported)
    model.load_state_dict(ckpt["model_state_dict"], strict=True)  # as eval_wrn.py / eval_wrn_ebm.py do
    buffer = ckpt["replay_buffer"]  # eval_wrn_ebm.py reads it on load
    assert buffer.dim() == 4 and buffer.shape[1] == channels and -1 <= buffer.min() <= buffer.max() <= 1, buffer.shape
    x = torch.from_numpy(np.load(images)).float()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = x / 127.5 - 1
    if x.shape[-1] != 32:
        released_model.Trunk.forward = pooled_forward
    model.eval()
    with torch.no_grad():
        np.save(logits_out, model.classify(x).numpy())
    if queue > 0:
        assert model.queue_logit.shape == (classes, queue), model.queue_logit.shape
    torch.save({"model_state_dict": model.state_dict(), "replay_buffer": torch.rand(4, channels, x.shape[-2], x.shape[-1]) * 2 - 1}, resaved)
    print(f"loaded strictly: {len(ckpt['model_state_dict'])} keys, queue {tuple(model.queue_logit.shape) if queue else None}, replay buffer {tuple(buffer.shape)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
