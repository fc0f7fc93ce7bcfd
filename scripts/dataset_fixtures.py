#!/usr/bin/env python3
"""Small datasets in the formats torchvision downloads, and what torchvision's
own dataset classes read from them, for gaia's readers to be checked against:

    scripts/dataset_fixtures.py --out DIR [--n 7]

DIR/cifar-10-batches-py/   test_batch pickled as the released files are
                           (Python 2 str for bytes, protocol 2), data_batch_1..5
                           at protocol 4 and at Python 3's protocol 2, batches.meta
DIR/cifar-100-python/      test and train (protocol 2 and 4), meta
DIR/test_32x32.mat         SVHN, uncompressed, y as double with 10 for the digit 0
DIR/train_32x32.mat        SVHN, compressed, y as uint8
DIR/expected.npz           per set, the images (N x 32 x 32 x 3) and labels
                           torchvision's CIFAR10, CIFAR100 and SVHN give
                           (their md5 integrity check skipped: these are not
                           the released files)
DIR/evil.pickle            a pickle that would run os.system: gaia must refuse it

Pixels and labels are seeded random values, so that any mix-up of planes,
rows or columns shows.
"""

import argparse
import io
import os
import pickle
import struct

import numpy as np


class Py2Pickler(pickle._Pickler):
    """Protocol 2 with bytes as Python 2's str (BINSTRING), as the CIFAR
    python batches released in 2009 were written."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)
    dispatch[bytes] = save_py2str


def dump(obj, path, how):
    with open(path, "wb") as f:
        if how == "py2":
            Py2Pickler(f, protocol=2).dump(obj)
        else:
            pickle.dump(obj, f, protocol=how)


def cifar_batch(rng, n, label_keys, classes, bytes_keys):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    d = {"batch_label": "testing batch 1 of 1", "data": data,
         "filenames": [f"img_{i}.png" for i in range(n)]}
    for k in label_keys:
        d[k] = [int(v) for v in rng.integers(0, classes, n)]
    if bytes_keys:  # the released files' keys and strings are Python 2 str
        d = {k.encode(): (v.encode() if isinstance(v, str) else
                          [x.encode() for x in v] if k == "filenames" else v) for k, v in d.items()}
    return d


class NoCheck:
    """torchvision's dataset classes verify the released files' md5; these
    fixtures are not those files."""
    def _check_integrity(self):
        return True

    def _load_meta(self):
        self.classes = []


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=7)
    a = ap.parse_args()
    rng = np.random.default_rng(11)
    n = a.n
    c10 = os.path.join(a.out, "cifar-10-batches-py")
    c100 = os.path.join(a.out, "cifar-100-python")
    os.makedirs(c10, exist_ok=True)
    os.makedirs(c100, exist_ok=True)
    dump(cifar_batch(rng, n, ["labels"], 10, True), os.path.join(c10, "test_batch"), "py2")
    for i in range(1, 6):
        dump(cifar_batch(rng, n + i, ["labels"], 10, False), os.path.join(c10, f"data_batch_{i}"), 4 if i % 2 else 2)
    dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
          "num_cases_per_batch": n, "num_vis": 3072}, os.path.join(c10, "batches.meta"), 2)
    dump(cifar_batch(rng, n, ["fine_labels", "coarse_labels"], 100, True), os.path.join(c100, "test"), "py2")
    dump(cifar_batch(rng, n + 3, ["fine_labels", "coarse_labels"], 100, False), os.path.join(c100, "train"), 4)
    dump({"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": [f"s{i}" for i in range(20)]},
         os.path.join(c100, "meta"), 2)

    import scipy.io
    for name, m, compress, ytype in (("test_32x32.mat", n, False, np.float64), ("train_32x32.mat", n + 2, True, np.uint8)):
        X = rng.integers(0, 256, (32, 32, 3, m), dtype=np.uint8)
        y = rng.integers(1, 11, (m, 1)).astype(ytype)
        y[0, 0] = 10  # the digit 0
        scipy.io.savemat(os.path.join(a.out, name), {"X": X, "y": y}, do_compression=compress)

    import torchvision.datasets as tvd

    class C10(NoCheck, tvd.CIFAR10):
        pass

    class C100(NoCheck, tvd.CIFAR100):
        pass

    class SVHN(NoCheck, tvd.SVHN):
        pass

    expected = {}
    sets = {"cifar10_test": C10(a.out, train=False), "cifar10_train": C10(a.out, train=True),
            "cifar100_test": C100(a.out, train=False), "cifar100_train": C100(a.out, train=True),
            "svhn_test": SVHN(a.out, split="test"), "svhn_train": SVHN(a.out, split="train")}
    for key, ds in sets.items():
        imgs, labels = [], []
        for i in range(len(ds)):
            img, label = ds[i]
            imgs.append(np.asarray(img.convert("RGB")))
            labels.append(label)
        expected[key + "_x"] = np.stack(imgs).astype(np.float32)
        expected[key + "_y"] = np.array(labels, dtype=np.float32)
    np.savez(os.path.join(a.out, "expected.npz"), **expected)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + os.path.join(a.out, "pwned"),))
    with open(os.path.join(a.out, "evil.pickle"), "wb") as f:
        pickle.dump({"data": Evil(), "labels": [1]}, f, protocol=2)
    print(f"dataset fixtures in {a.out}: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))


if __name__ == "__main__":
    main()
