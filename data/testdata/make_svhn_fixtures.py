#!/usr/bin/python3
"""Writes tiny SVHN-style .mat files (MATLAB v5, as scipy.io.savemat writes them) for the tests.

X is uint8 of shape (H, W, 3, N) and y is (N, 1) with 10 standing for the digit 0, exactly like
SVHN's train_32x32.mat. Pixel (r, c, ch, n) is (r*7 + c*3 + ch*50 + n*11) % 256 so the Go test
can recompute every value and catch any transposition. Run with Debian's python3-scipy:
    /usr/bin/python3 make_svhn_fixtures.py
"""
import numpy as np
import scipy.io

H, W, C, N = 32, 32, 3, 5
r, c, ch, n = np.meshgrid(np.arange(H), np.arange(W), np.arange(C), np.arange(N), indexing="ij")
X = ((r * 7 + c * 3 + ch * 50 + n * 11) % 256).astype(np.uint8)
y = np.array([[10], [1], [2], [9], [10]], dtype=np.uint8)

scipy.io.savemat("svhn_small.mat", {"X": X, "y": y}, format="5", do_compression=False)
scipy.io.savemat("svhn_small_compressed.mat", {"X": X, "y": y}, format="5", do_compression=True)
# MATLAB itself often stores labels as double; the reader must accept that too.
scipy.io.savemat("svhn_small_double.mat", {"X": X, "y": y.astype(np.float64)}, format="5")
# Tiny files (4x4 pixels, 2 images) seed the fuzzer: its minimiser crawls on 15 KB inputs.
Xt = X[:4, :4, :, :2].copy()
scipy.io.savemat("svhn_tiny.mat", {"X": Xt, "y": y[:2]}, format="5")
scipy.io.savemat("svhn_tiny_compressed.mat", {"X": Xt, "y": y[:2]}, format="5", do_compression=True)
# A label outside 1..10 must be rejected.
scipy.io.savemat("svhn_bad_label.mat", {"X": X, "y": np.array([[10], [1], [11], [2], [3]], dtype=np.uint8)}, format="5")
