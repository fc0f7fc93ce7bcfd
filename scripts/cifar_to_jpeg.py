#!/usr/bin/env python3
"""A CIFAR binary file as JPEGs, encoded as ../shared/data's training JPEGs
were (Pillow, quality 75, 4:2:0: their quantization tables are Pillow's at
75), one folder per class (the class index, zero-padded, so that the sorted
folder order is the label order):

    scripts/cifar_to_jpeg.py --bin test_batch.bin --out build/c10/test-jpeg [--quality 75]

for comparing in-distribution test images that went through the same lossy
encoding as a JPEG fit set (docs/results.md).
"""

import argparse
import os

import numpy as np
from PIL import Image


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quality", type=int, default=75)
    a = ap.parse_args()
    raw = np.fromfile(a.bin, dtype=np.uint8)
    if raw.size % 3073:
        raise SystemExit(f"{a.bin}: {raw.size} bytes is not a whole number of 3073-byte CIFAR-10 records")
    recs = raw.reshape(-1, 3073)
    for i, r in enumerate(recs):
        d = os.path.join(a.out, f"{r[0]:02d}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(r[1:].reshape(3, 32, 32).transpose(1, 2, 0)).save(os.path.join(d, f"{i:05d}.jpg"), quality=a.quality)
    print(f"{len(recs)} images to {a.out}")


if __name__ == "__main__":
    main()
