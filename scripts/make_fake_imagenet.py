#!/usr/bin/env python3
"""Generated stand-ins for the ImageNet-1K OOD benchmark's data, in its layouts
and at its image sizes, for rehearsing the protocol where the real sets are not
at hand (docs/imagenet.md). Nothing here is real data: smooth random colour
fields with some edges, JPEG-encoded like the originals.

    scripts/make_fake_imagenet.py --out build/fake-imagenet --id-classes 20 --per-class 10 --ood 100

writes
    val/n000000CC/ILSVRC2012_val_NNNNNNNN.JPEG   folder per synset (ImageNet val)
    val.txt                                      the same as a list file: "path label"
    iNaturalist/*.jpg, SUN/*.jpg, Places/*.jpg   flat folders
    dtd/images/<texture>/*.jpg                   DTD's layout (Textures)
ImageNet val images are about 500 x 375 (shorter side 333-500, a few larger
and a few grayscale); the OOD subsets of the MOS/GradNorm line hold JPEGs of
similar size; DTD's are 300-640 px.
"""

import argparse
import os

import numpy as np
from PIL import Image


def image(rng, h, w, gray=False):
    """A smooth random field plus a few rectangles: compresses like a photo."""
    small = rng.random((max(2, h // 32), max(2, w // 32), 3))
    im = Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    a = np.asarray(im).astype(np.int16)
    for _ in range(rng.integers(2, 6)):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        a[y0:y0 + rng.integers(4, h // 3), x0:x0 + rng.integers(4, w // 3)] += rng.integers(-80, 80, 3)
    a += rng.integers(-6, 7, a.shape)
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return im.convert("L") if gray else im


def size(rng, kind):
    if kind == "dtd":
        return int(rng.integers(300, 641)), int(rng.integers(300, 641))
    short = int(rng.choice([333, 375, 400, 500]))
    long_ = int(rng.integers(short, 2 * short))
    if rng.random() < 0.02:
        short, long_ = 1200, 1600  # the occasional large photo
    return (short, long_) if rng.random() < 0.75 else (long_, short)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--id-classes", type=int, default=20)
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--ood", type=int, default=100, help="images per OOD set")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    lines = []
    n = 0
    for c in range(a.id_classes):
        d = os.path.join(a.out, "val", f"n{c:08d}")
        os.makedirs(d, exist_ok=True)
        for _ in range(a.per_class):
            n += 1
            h, w = size(rng, "val")
            rel = os.path.join("val", f"n{c:08d}", f"ILSVRC2012_val_{n:08d}.JPEG")
            image(rng, h, w, gray=rng.random() < 0.02).save(os.path.join(a.out, rel), quality=90)
            lines.append(f"{rel} {c}")
    with open(os.path.join(a.out, "val.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for name in ("iNaturalist", "SUN", "Places"):
        d = os.path.join(a.out, name)
        os.makedirs(d, exist_ok=True)
        for i in range(a.ood):
            h, w = size(rng, name)
            image(rng, h, w).save(os.path.join(d, f"{name.lower()}_{i:05d}.jpg"), quality=90)
    for i in range(a.ood):
        d = os.path.join(a.out, "dtd", "images", f"texture{i % 47:02d}")
        os.makedirs(d, exist_ok=True)
        h, w = size(rng, "dtd")
        image(rng, h, w).save(os.path.join(d, f"texture{i % 47:02d}_{i:04d}.jpg"), quality=90)
    print(f"wrote {n} ID images in {a.id_classes} synsets and {a.ood} per OOD set under {a.out}")


if __name__ == "__main__":
    main()
