#!/usr/bin/python3
"""Reference IS and Fréchet distances from numpy/scipy for eval's generation tests.

Features and probabilities are float32 values (as a model exports them); every reference is
computed from them in float64. The Fréchet distance is pytorch-fid's calculate_frechet_distance
(scipy.linalg.sqrtm of the covariance product, the real part kept), with eps·I added to both
covariances when the product is singular, which is decided here from the eigenvalues of Σ₁Σ₂
(numpy's general eigvals) independently of the Go code. The IS is exp(mean KL(p(y|x) || p(y))) per
split with scipy.special.rel_entr (no renormalisation of the rows), mean and np.std over splits.

    /usr/bin/python3 gen_generation.py > generation.json
"""
import json
import sys

import numpy as np
import scipy
from scipy import linalg
from scipy.special import rel_entr

EPS = 1e-6


def f32(a):
    return np.asarray(a, dtype=np.float32)


def frechet(f1, f2):
    x1, x2 = f1.astype(np.float64), f2.astype(np.float64)
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.atleast_2d(np.cov(x1, rowvar=False)), np.atleast_2d(np.cov(x2, rowvar=False))
    lam = np.linalg.eigvals(s1 @ s2).real
    singular = bool(lam.min() <= 1e-10 * np.abs(lam).max())
    if singular:
        off = np.eye(s1.shape[0]) * EPS
        s1, s2 = s1 + off, s2 + off
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)), singular


def fd_case(name, f1, f2):
    f1, f2 = f32(f1), f32(f2)
    fd, singular = frechet(f1, f2)
    return {"name": name, "n1": f1.shape[0], "n2": f2.shape[0], "d": f1.shape[1],
            "feats1": [float(v) for v in f1.ravel()], "feats2": [float(v) for v in f2.ravel()],
            "fd": fd, "eps_used": singular}


def inception_score(p, splits):
    p = p.astype(np.float64)
    part = p.shape[0] // splits
    scores = []
    for k in range(splits):
        q = p[k * part:(k + 1) * part]
        py = q.mean(0, keepdims=True)
        scores.append(np.exp(rel_entr(q, py).sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def is_case(name, probs, splits):
    probs = f32(probs)
    m, s = inception_score(probs, splits)
    return {"name": name, "n": probs.shape[0], "classes": probs.shape[1], "splits": splits,
            "probs": [float(v) for v in probs.ravel()], "mean": m, "std": s}


def main():
    rng = np.random.default_rng(20261201)
    a = rng.normal(size=(8, 8))
    fd = [
        fd_case("gaussian d8", rng.normal(size=(200, 8)) @ a, rng.normal(0.3, 1.2, size=(150, 8))),
        fd_case("same set", *(2 * [rng.normal(size=(60, 5))])),
        fd_case("relu d64", np.maximum(rng.normal(size=(300, 64)) @ rng.normal(size=(64, 64)) * 0.2, 0),
                np.maximum(rng.normal(0.1, 1, size=(250, 64)) @ rng.normal(size=(64, 64)) * 0.2, 0)),
        fd_case("fewer samples than features", rng.normal(size=(20, 40)), rng.normal(1, 2, size=(30, 40))),
        fd_case("one feature", rng.normal(size=(50, 1)), rng.normal(2, 3, size=(70, 1))),
    ]
    onehot = np.eye(5)[rng.integers(0, 5, 50)] * 0.9 + 0.1 * np.eye(5)[rng.integers(0, 5, 50)]
    onehot[::7] = np.eye(5)[0]
    inc = [
        is_case("dirichlet 1000x10", rng.dirichlet(0.3 * np.ones(10), 1000), 10),
        is_case("remainder 103x7 in 3", rng.dirichlet(np.ones(7), 103), 3),
        is_case("exact zeros", onehot, 5),
        is_case("uniform", np.full((40, 4), 0.25), 4),
    ]
    json.dump({"numpy": np.__version__, "scipy": scipy.__version__, "frechet": fd, "inception": inc},
              sys.stdout, separators=(",", ":"))


if __name__ == "__main__":
    main()
