#!/usr/bin/env python3
"""FPR95 and AUROC as the GAIA authors' metrics.py computes them, from gaia
score files, beside gaia's own (gaia eval), to measure how far the two
conventions are apart on real scores (docs/reproduce.md):

    scripts/authors_metrics.py --id id.csv --ood NAME=ood.csv [--ood ...]

The authors' code scores confidence (their scores are -GAIA, higher =
in-distribution); its FPR95 threshold is the sorted ID confidence at index
round(0.05 n) (Python's round: half to even) and counts OOD samples strictly
above it; its AUROC is a trapezoid over a curve built by merging the two
sorted lists, ties resolved as its loop resolves them. Written here from
that description, not copied.
"""

import argparse
import csv
import subprocess
import sys

import numpy as np


def read(path):
    with open(path) as f:
        r = csv.reader(f)
        head = next(r)
        rows = list(r)
    dets = head[4:]
    return dets, {d: np.array([float(row[4 + i]) for row in rows]) for i, d in enumerate(dets)}


def authors(known, novel):
    """known, novel: confidences (higher = ID)."""
    known, novel = np.sort(known), np.sort(novel)
    nk, nn = len(known), len(novel)
    thr = known[round(0.05 * nk)]
    fpr = float(np.sum(novel > thr)) / nn
    # The merge of the two ascending lists: each step removes the smallest
    # remaining value, an OOD one first only when it is strictly smaller.
    tp, fp = [nk], [nn]
    k = n = 0
    while k < nk or n < nn:
        if k < nk and (n == nn or not novel[n] < known[k]):
            k += 1
            tp.append(tp[-1] - 1)
            fp.append(fp[-1])
        else:
            n += 1
            tp.append(tp[-1])
            fp.append(fp[-1] - 1)
    tp, fp = np.array(tp, float), np.array(fp, float)
    allv = np.sort(np.concatenate([known, novel]))
    # Tied values take the counts of the point after them, as their loop does.
    for j in range(nk + nn - 1, 0, -1):
        if allv[j] == allv[j - 1]:
            tp[j], fp[j] = tp[j + 1], fp[j + 1]
    tpr = np.concatenate([[1.0], tp / tp[0], [0.0]])
    fprc = np.concatenate([[1.0], fp / fp[0], [0.0]])
    auroc = -np.trapz(1.0 - fprc, tpr)
    return fpr, auroc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--id", required=True)
    ap.add_argument("--ood", action="append", required=True)
    ap.add_argument("--gaia", default="bin/gaia")
    a = ap.parse_args()
    dets, idc = read(a.id)
    out = subprocess.run([a.gaia, "eval", "--id", a.id] + sum([["--ood", o] for o in a.ood], []) + ["--format", "csv"],
                         capture_output=True, text=True, check=True).stdout
    ours = {(r["detector"], r["ood_set"]): r for r in csv.DictReader(out.splitlines())}
    print("| detector | set | gaia FPR95 | authors' FPR95 | diff | gaia AUROC | authors' AUROC | diff |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    worst_f = worst_a = 0.0
    for o in a.ood:
        name, path = o.split("=", 1)
        _, oc = read(path)
        for d in dets:
            f, au = authors(-idc[d], -oc[d])
            g = ours[(d, name)]
            gf, ga = float(g["fpr95"]), float(g["auroc"])
            worst_f, worst_a = max(worst_f, abs(f - gf)), max(worst_a, abs(au - ga))
            print(f"| {d} | {name} | {100 * gf:.2f} | {100 * f:.2f} | {100 * (f - gf):+.2f} | {100 * ga:.2f} | {100 * au:.2f} | {100 * (au - ga):+.2f} |")
    print(f"\nlargest difference: FPR95 {100 * worst_f:.2e} points, AUROC {100 * worst_a:.2e} points", file=sys.stderr)


if __name__ == "__main__":
    main()
