#!/usr/bin/python3
"""Reference OOD metrics from scikit-learn for eval's tests.

Writes JSON: a list of cases, each with in/out scores and sklearn's roc_auc_score,
average_precision_score (in positive; out positive on negated scores), the FPR at 95% TPR as
fpr[np.searchsorted(tpr, 0.95)] on roc_curve's default curve, and both roc_curve variants.

    /usr/bin/python3 sklearn_ood.py [--seed N] [--large N] > sklearn_ood.json
"""
import argparse
import json
import sys

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def case(name, ins, outs):
    ins = [float(v) for v in ins]
    outs = [float(v) for v in outs]
    y = np.r_[np.ones(len(ins)), np.zeros(len(outs))]
    s = np.r_[ins, outs]
    fpr, tpr, thr = roc_curve(y, s)
    fpr_all, tpr_all, thr_all = roc_curve(y, s, drop_intermediate=False)
    return {
        "name": name,
        "in": ins,
        "out": outs,
        "auroc": float(roc_auc_score(y, s)),
        "aupr_in": float(average_precision_score(y, s)),
        "aupr_out": float(average_precision_score(1 - y, -s)),
        "fpr95": float(fpr[np.searchsorted(tpr, 0.95)]),
        "roc_fpr": fpr.tolist(),
        "roc_tpr": tpr.tolist(),
        "roc_thresholds": thr.tolist(),
        "roc_all_fpr": fpr_all.tolist(),
        "roc_all_tpr": tpr_all.tolist(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--large", type=int, default=4000)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    cases = [
        case("tiny separable", [1.0], [0.0]),
        case("tiny inverted", [0.0], [1.0]),
        case("tiny tied", [0.5], [0.5]),
        case("two each", [0.9, 0.2], [0.4, 0.1]),
        case("all equal", [3.0] * 10, [3.0] * 7),
        case("integer ties", rng.integers(0, 5, 60), rng.integers(0, 4, 45)),
        case("saturated maxprob", np.r_[np.ones(30), rng.uniform(0.5, 1, 20)],
             np.r_[np.ones(12), rng.uniform(0.3, 1, 28)]),
        # Equal steps make collinear ROC points, which drop_intermediate removes; FPR95 must follow.
        case("collinear steps", [10, 9, 8, 7, 6, 5, 4, 3, 2, 1] * 2, [9.5, 8.5, 7.5, 6.5, 5.5, 4.5, 3.5, 2.5, 1.5, 0.5] * 2),
        # Tie groups of one in + one out make a diagonal with equal steps; drop_intermediate removes
        # its middle point, so the standard FPR95 lands on (fpr .1, tpr 1) rather than (.05, .95).
        case("diagonal ties", list(range(100, 82, -1)) + [50, 40], [50, 40] + list(range(30, 12, -1))),
        case("negative and huge", [-1e30, -5.0, 1e300, 0.0, -0.0], [-1e300, -5.0, 7.0, 0.0]),
        case("perfect", rng.normal(10, 1, 50), rng.normal(-10, 1, 50)),
        case("rounded normals", np.round(rng.normal(1, 1, 500), 1), np.round(rng.normal(0, 1.2, 300), 1)),
        case("large float32", rng.normal(0.8, 1, a.large).astype(np.float32),
             rng.normal(0, 1.3, a.large // 2).astype(np.float32)),
        case("large heavy ties", rng.integers(0, 50, a.large), rng.integers(0, 40, a.large * 3 // 4)),
    ]
    json.dump({"sklearn": sklearn.__version__, "seed": a.seed, "cases": cases}, sys.stdout)


if __name__ == "__main__":
    main()
