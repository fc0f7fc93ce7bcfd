#!/usr/bin/env python3
"""Pillow and torchvision as the reference for gaia's preprocessing.

Run with a Python whose Pillow links libjpeg-turbo (Debian's python3-pil: the
same libjpeg62-turbo gaia links). torchvision's transforms are used when
importable; otherwise the two numbers they add to Pillow (Resize's long side,
CenterCrop's offset) are computed here as torchvision 0.14 computes them.

    pillow_reference.py make --out DIR
        writes images of every kind gaia must read as Pillow does (JPEG:
        baseline 4:2:0, 4:2:2, 4:4:4, progressive, grayscale, CMYK, YCCK,
        EXIF-rotated, restart markers; PNG: RGB, RGBA, gray, gray+alpha,
        palette with and without transparency, 16-bit RGB and gray, 1-bit)
        at ImageNet sizes and small ones, into DIR/WxH/, one folder a size.
    pillow_reference.py compare --dump X.npy --transform OPTS --channels C
        recomputes every row of `gaia data dump --raw` (X.npy, with
        X.npy.sources.tsv) with Pillow and reports max |difference|; exit 1
        when any pixel differs.
    pillow_reference.py cifar --sources LIST --size 32 --out X.bin
        writes the images of LIST (one path a line) resized with Pillow's
        bilinear filter as a CIFAR-10 binary file (label 0).
    pillow_reference.py time --sources LIST --transform OPTS --channels C
        one-core time per image of Pillow's decode and transforms, and of
        torchvision's whole pipeline (with ToTensor and Normalize).
"""

import argparse
import ctypes
import ctypes.util
import io
import json
import os
import sys
import time

import numpy as np
from PIL import Image

try:
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode
except Exception:  # noqa: BLE001 - any failure means: no torchvision here
    TF = None

FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def parse_opts(opts):
    out = {}
    for part in filter(None, opts.split(",")):
        k, _, v = part.partition("=")
        out[k] = v
    return out


def hw(v):
    if "x" in v:
        h, w = v.split("x")
        return int(h), int(w)
    return int(v), int(v)


def resize_size(w, h, short):
    """torchvision's Resize(short) on a PIL image of w x h: (new_w, new_h)."""
    if w <= h:
        return short, int(short * h / w)
    return int(short * w / h), short


def center_crop(img, ch, cw):
    if TF is not None:
        return TF.center_crop(img, [ch, cw])
    w, h = img.size
    if cw > w or ch > h:
        pad = ((cw - w) // 2 if cw > w else 0, (ch - h) // 2 if ch > h else 0,
               (cw - w + 1) // 2 if cw > w else 0, (ch - h + 1) // 2 if ch > h else 0)
        canvas = Image.new(img.mode, (w + pad[0] + pad[2], h + pad[1] + pad[3]), 0)
        canvas.paste(img, (pad[0], pad[1]))
        img = canvas
        w, h = img.size
        if (w, h) == (cw, ch):
            return img
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return img.crop((left, top, left + cw, top + ch))


def resize(img, opts):
    filt = opts.get("resize-filter", "bilinear")
    v = opts["resize"]
    if TF is not None:
        mode = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                "nearest": InterpolationMode.NEAREST}[filt]
        size = list(hw(v)) if "x" in v else int(v)
        return TF.resize(img, size, interpolation=mode)
    w, h = img.size
    if "x" in v:
        nh, nw = hw(v)
    else:
        nw, nh = resize_size(w, h, int(v))
    return img.resize((nw, nh), FILTERS[filt])


def pipeline(path, opts, channels):
    """What a PyTorch user's ImageFolder pipeline makes of one file (a path or
    a file object), before ToTensor: Image.open, convert, Resize, CenterCrop.
    Returns H x W x C uint8."""
    with Image.open(path) as img:
        if "gray" in opts:
            img = img.convert("L")
        elif "rgb" in opts:
            img = img.convert("RGB")
        img = img.convert("RGB" if channels == 3 else "L")
    if "resize" in opts:
        img = resize(img, opts)
    if "center-crop" in opts:
        img = center_crop(img, *hw(opts["center-crop"]))
    a = np.asarray(img, dtype=np.uint8)
    return a if a.ndim == 3 else a[:, :, None]


def read_sources(dump):
    rows = []
    with open(dump + ".sources.tsv") as f:
        next(f)
        for line in f:
            idx, label, src = line.rstrip("\n").split("\t", 2)
            rows.append(src)
    return rows


def cmd_compare(a):
    x = np.load(a.dump)
    srcs = read_sources(a.dump)
    opts = parse_opts(a.transform)
    if x.shape[0] != len(srcs):
        print(f"compare: {a.dump} has {x.shape[0]} rows, its sources {len(srcs)}", file=sys.stderr)
        return 1
    worst, bad = 0, []
    for i, src in enumerate(srcs):
        want = pipeline(src, opts, a.channels).transpose(2, 0, 1)
        got = x[i]
        if want.shape != got.shape:
            bad.append({"source": src, "want_shape": list(want.shape), "got_shape": list(got.shape)})
            worst = 255
            continue
        d = int(np.abs(want.astype(np.int32) - got.astype(np.int32)).max())
        if d:
            bad.append({"source": src, "max_diff": d, "pixels_differing": int((want != got).sum())})
        worst = max(worst, d)
    print(json.dumps({"transform": a.transform, "images": len(srcs), "max_abs_diff": worst,
                      "torchvision": TF is not None, "differing": bad[:10]}))
    return 1 if worst else 0


def scene(w, h, seed):
    """A natural-looking test picture: gradients, edges, texture and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / (7 + seed % 5)) * np.cos(y / 11)
    g = 255 * (x + y) / (w + h)
    b = 128 + 90 * np.sign(np.sin((x - y) / 13))
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    img[h // 3: h // 2, w // 4: w // 2] = [250, 20, 30]  # a hard-edged block
    return np.clip(img, 0, 255).astype(np.uint8)


def ycck_jpeg(cmyk, quality=90):
    """A YCCK JPEG through TurboJPEG, which compresses CMYK as YCCK."""
    name = ctypes.util.find_library("turbojpeg") or "libturbojpeg.so.0"
    tj = ctypes.CDLL(name)
    tj.tjInitCompress.restype = ctypes.c_void_p
    h = tj.tjInitCompress()
    h_, w_ = cmyk.shape[:2]
    buf = ctypes.POINTER(ctypes.c_ubyte)()
    size = ctypes.c_ulong(0)
    data = np.ascontiguousarray(cmyk)
    TJPF_CMYK, TJSAMP_420 = 11, 2
    rc = tj.tjCompress2(ctypes.c_void_p(h), data.ctypes.data_as(ctypes.POINTER(ctypes.c_ubyte)), w_, 0, h_,
                        TJPF_CMYK, ctypes.byref(buf), ctypes.byref(size), TJSAMP_420, quality, 0)
    if rc != 0:
        raise RuntimeError("tjCompress2 failed")
    out = ctypes.string_at(buf, size.value)
    tj.tjFree(buf)
    tj.tjDestroy(ctypes.c_void_p(h))
    return out


def cmd_make(a):
    made = []

    def save(name, img, **kw):
        p = os.path.join(d, name)
        img.save(p, **kw)
        made.append(name)

    sizes = [(500, 375), (375, 500), (517, 333), (64, 64), (31, 17)]
    for i, (w, h) in enumerate(sizes):
        d = os.path.join(a.out, f"{w}x{h}")  # one folder a size: `gaia data dump` of each needs one shape
        os.makedirs(d, exist_ok=True)
        rgb = Image.fromarray(scene(w, h, i))
        save(f"s{i}_420.jpg", rgb, quality=85, subsampling=2)
        save(f"s{i}_422.jpg", rgb, quality=92, subsampling=1)
        save(f"s{i}_444.jpg", rgb, quality=75, subsampling=0)
        save(f"s{i}_prog.jpg", rgb, quality=88, progressive=True)
        save(f"s{i}_gray.jpg", rgb.convert("L"), quality=90)
        save(f"s{i}_cmyk.jpg", rgb.convert("CMYK"), quality=90)
        save(f"s{i}_png_rgb.png", rgb)
        rgba = rgb.copy()
        rgba.putalpha(Image.fromarray((np.arange(w * h).reshape(h, w) % 256).astype(np.uint8)))
        save(f"s{i}_png_rgba.png", rgba)
        save(f"s{i}_png_gray.png", rgb.convert("L"))
        save(f"s{i}_png_la.png", rgba.convert("LA"))
        save(f"s{i}_png_pal.png", rgb.convert("P", palette=Image.ADAPTIVE, colors=200))
        if i < 2:
            exif = Image.Exif()
            exif[0x0112] = 6  # orientation: rotate 90 on display; Pillow leaves it
            save(f"s{i}_exif6.jpg", rgb, quality=85, exif=exif.tobytes())
            save(f"s{i}_restart.jpg", rgb, quality=85, restart_marker_blocks=4)  # ignored by a Pillow without them
            pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=64)
            save(f"s{i}_png_paltrns.png", pal, transparency=3)
            save(f"s{i}_png_1bit.png", rgb.convert("1"))
            try:
                ycck = ycck_jpeg(np.asarray(rgb.convert("CMYK")))
                with open(os.path.join(d, f"s{i}_ycck.jpg"), "wb") as f:
                    f.write(ycck)
                made.append(f"s{i}_ycck.jpg")
            except (OSError, RuntimeError) as e:
                print(f"make: no YCCK JPEG ({e}): install libturbojpeg0", file=sys.stderr)
        # 16-bit PNGs, written by hand (Pillow writes 16-bit gray only as I;16)
        a16 = (scene(w, h, i + 7).astype(np.uint16) * 257 + np.arange(w)[None, :, None]).astype(np.uint16)
        with open(os.path.join(d, f"s{i}_png_rgb16.png"), "wb") as f:
            f.write(png16(a16))
        made.append(f"s{i}_png_rgb16.png")
        g16 = (a16[:, :, 0] // 64).astype(np.uint16)  # 0..1023: Pillow clips above 255
        with open(os.path.join(d, f"s{i}_png_gray16.png"), "wb") as f:
            f.write(png16(g16[:, :, None]))
        made.append(f"s{i}_png_gray16.png")
    print(json.dumps({"images": len(made), "sizes": [f"{w}x{h}" for w, h in sizes]}))
    return 0


def png16(a):
    """A minimal 16-bit PNG (gray or RGB), big-endian samples, filter 0."""
    import struct
    import zlib
    h, w, c = a.shape
    color = {1: 0, 3: 2}[c]
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, body):
        return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def cmd_cifar(a):
    with open(a.sources) as f:
        paths = [line.strip() for line in f if line.strip()]
    with open(a.out, "wb") as f:
        for p in paths:
            img = Image.open(p).convert("RGB").resize((a.size, a.size), Image.BILINEAR)
            f.write(bytes([0]) + np.asarray(img).transpose(2, 0, 1).tobytes())
    print(json.dumps({"images": len(paths), "out": a.out}))
    return 0


def cmd_time(a):
    with open(a.sources) as f:
        paths = [line.strip() for line in f if line.strip()]
    opts = parse_opts(a.transform)
    raw = [open(p, "rb").read() for p in paths]  # timed from memory, as gaia's benchmark
    impls = [("pillow", lambda b: pipeline(io.BytesIO(b), opts, a.channels))]
    try:
        import torch
        import torchvision.transforms as T
        torch.set_num_threads(1)
        steps = []
        if "resize" in opts:
            v = opts["resize"]
            steps.append(T.Resize(list(hw(v)) if "x" in v else int(v)))
        if "center-crop" in opts:
            steps.append(T.CenterCrop(list(hw(opts["center-crop"]))))
        full = T.Compose(steps + [T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
        impls.append(("torchvision", lambda b: full(Image.open(io.BytesIO(b)).convert("RGB"))))
    except ImportError:
        pass
    out = {}
    for name, fn in impls:
        fn(raw[0])
        best = None
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            for b in raw:
                fn(b)
            dt = (time.perf_counter() - t0) / len(raw)
            best = dt if best is None else min(best, dt)
        out[name + "_ms_per_image"] = 1000 * best
    out.update({"images": len(raw), "transform": a.transform})
    print(json.dumps(out))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--dump", required=True)
    c.add_argument("--transform", default="")
    c.add_argument("--channels", type=int, default=3)
    k = sub.add_parser("cifar")
    k.add_argument("--sources", required=True)
    k.add_argument("--size", type=int, default=32)
    k.add_argument("--out", required=True)
    t = sub.add_parser("time")
    t.add_argument("--sources", required=True)
    t.add_argument("--transform", default="")
    t.add_argument("--channels", type=int, default=3)
    t.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    return {"make": cmd_make, "compare": cmd_compare, "cifar": cmd_cifar, "time": cmd_time}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
