#!/usr/bin/env python3
"""Small stand-ins for every set of the GAIA authors' CIFAR benchmark, each in
its real format and layout (the authors' -data_dir), for rehearsing
configs/gaia_cifar10.yaml and gaia_cifar100.yaml end to end:

    scripts/make_cifar_standins.py --out DIR [--classes 10] [--test 200] [--train 100] [--ood 60]

DIR/cifar-10-batches-py/     test_batch (--test images) and data_batch_1..5
                             (--train each), pickled as the released files
                             (cifar-100-python/ test and train with --classes 100)
DIR/test_32x32.mat           SVHN test, MATLAB 5, labels 1..10
DIR/LSUN/, DIR/Imagenet/     image folders of 36 x 36 and 64 x 64 JPEGs (the
                             ODIN-style crops' sizes)
DIR/Places/                  256 x 256 JPEGs
DIR/textures/images/         300 x 400 JPEGs in class folders, as DTD's

The pixels are seeded noise of a different texture per set; nothing here
is real data.
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dataset_fixtures import dump  # noqa: E402


def batch(rng, n, classes, hundred):
    data = (rng.integers(0, 256, (n, 3, 8, 8)).repeat(4, 2).repeat(4, 3)).astype(np.uint8).reshape(n, 3072)
    d = {b"batch_label": b"stand-in", b"data": data, b"filenames": [b"x.png"] * n}
    labels = [int(v) for v in rng.integers(0, classes, n)]
    if hundred:
        d[b"fine_labels"], d[b"coarse_labels"] = labels, [v // 5 for v in labels]
    else:
        d[b"labels"] = labels
    return d


def folder(rng, root, n, h, w, classes=2, smooth=1):
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
    for i in range(n):
        a = rng.integers(0, 256, (h // smooth + 1, w // smooth + 1, 3)).astype(np.uint8)
        a = a.repeat(smooth, 0).repeat(smooth, 1)[:h, :w]
        Image.fromarray(a).save(os.path.join(root, f"class{i % classes}", f"{i:05d}.jpg"), quality=90)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--classes", type=int, default=10, choices=(10, 100))
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--ood", type=int, default=60)
    a = ap.parse_args()
    rng = np.random.default_rng(5)
    hundred = a.classes == 100
    if hundred:
        d = os.path.join(a.out, "cifar-100-python")
        os.makedirs(d, exist_ok=True)
        dump(batch(rng, a.test, 100, True), os.path.join(d, "test"), "py2")
        dump(batch(rng, 5 * a.train, 100, True), os.path.join(d, "train"), "py2")
    else:
        d = os.path.join(a.out, "cifar-10-batches-py")
        os.makedirs(d, exist_ok=True)
        dump(batch(rng, a.test, 10, False), os.path.join(d, "test_batch"), "py2")
        for i in range(1, 6):
            dump(batch(rng, a.train, 10, False), os.path.join(d, f"data_batch_{i}"), "py2")
    import scipy.io
    X = rng.integers(0, 256, (32, 32, 3, a.ood), dtype=np.uint8)
    y = rng.integers(1, 11, (a.ood, 1)).astype(np.float64)
    scipy.io.savemat(os.path.join(a.out, "test_32x32.mat"), {"X": X, "y": y}, do_compression=True)
    folder(rng, os.path.join(a.out, "LSUN"), a.ood, 36, 36, smooth=2)
    folder(rng, os.path.join(a.out, "Imagenet"), a.ood, 64, 64, smooth=3)
    folder(rng, os.path.join(a.out, "Places"), a.ood, 256, 256, smooth=8)
    folder(rng, os.path.join(a.out, "textures", "images"), a.ood, 300, 400, classes=3, smooth=16)
    print(f"stand-ins in {a.out}: CIFAR-{a.classes} test {a.test}, train {5 * a.train}; {a.ood} images per OOD set")


if __name__ == "__main__":
    main()
