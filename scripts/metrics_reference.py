#!/usr/bin/env python3
"""Expected OOD metrics from scikit-learn, for the Go metrics tests.

    scripts/metrics_reference.py --out build/testdata/metrics_cases.json

Each case holds ID and OOD scores (OOD scores: higher = more OOD) and what
sklearn's roc_curve, roc_auc_score and average_precision_score give for them.
"""

import argparse
import json

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def fpr_at_tpr(y, s, tpr_level=0.95):
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr, tpr_level - 1e-12, side="left")])


def expected(id_s, ood_s):
    id_s, ood_s = np.asarray(id_s, float), np.asarray(ood_s, float)
    s = np.concatenate([id_s, ood_s])
    y_out = np.concatenate([np.zeros(len(id_s)), np.ones(len(ood_s))])
    y_in = 1 - y_out
    fpr, tpr, _ = roc_curve(y_out, s, drop_intermediate=False)
    return {
        "fpr95": fpr_at_tpr(y_in, -s),
        "fpr95_ood_positive": fpr_at_tpr(y_out, s),
        "auroc": float(roc_auc_score(y_out, s)),
        "aupr_in": float(average_precision_score(y_in, -s)),
        "aupr_out": float(average_precision_score(y_out, s)),
        "detection_error": float(np.min(0.5 * (1 - tpr) + 0.5 * fpr)),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rng = np.random.default_rng(3)
    cases = []
    for n_id, n_ood, shift in [(200, 300, 1.0), (1000, 1000, 0.3), (50, 7, 2.0), (7, 50, -0.5)]:
        cases.append(("random", rng.normal(0, 1, n_id), rng.normal(shift, 1, n_ood)))
    for levels in (3, 5, 20):  # heavy ties
        cases.append((f"ties{levels}", rng.integers(0, levels, 400).astype(float),
                      rng.integers(1, levels + 1, 300).astype(float)))
    cases.append(("separated", np.arange(100.0), np.arange(100.0) + 1000))
    cases.append(("reversed", np.arange(100.0) + 1000, np.arange(100.0)))
    cases.append(("all-equal", np.ones(40), np.ones(60)))
    cases.append(("one-each", np.array([0.0]), np.array([1.0])))
    out = [{"name": n, "id": list(map(float, i)), "ood": list(map(float, o)), "want": expected(i, o)}
           for n, i, o in cases]
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
