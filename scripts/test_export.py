#!/usr/bin/env python3
"""Checks scripts/export.py on the checkpoint layouts users have, without
downloading any: weight files of the same layout are built from random values
(the official BiT release .npz with TensorFlow HWIO kernels, a timm resnetv2
state dict, a torchvision ResNet-50 .pth, the GAIA authors' CIFAR ResNet-18/
34/50 and WRN-40-2 checkpoints), exported, and the TorchScript output
is compared with an eager model written here from the raw arrays (1e-5
relative). Run by `make test`.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORT = os.path.join(HERE, "export.py")
UNITS = {"bit_s_r50x1": [3, 4, 6, 3], "bit_s_r101x1": [3, 4, 23, 3]}


def random_bit_npz(units, classes, rng):
    """Arrays named and shaped as BiT's release: kernels HWIO, GN gamma/beta 1-D."""
    w = {}

    def kernel(name, k, cin, cout, scale=0.1):
        w[name] = rng.standard_normal((k, k, cin, cout)).astype(np.float32) * scale

    def gn(name, c, scale=1.0):
        w[name + "/gamma"] = ((rng.random(c) + 0.5) * scale).astype(np.float32)
        w[name + "/beta"] = (rng.standard_normal(c) * 0.1).astype(np.float32)

    kernel("resnet/root_block/standardized_conv2d/kernel", 7, 3, 64)
    cin = 64
    for b, n in enumerate(units):
        cout, cmid = 256 * 2 ** b, 64 * 2 ** b
        for u in range(1, n + 1):
            p = f"resnet/block{b + 1}/unit{u:02d}/"
            c0 = cin if u == 1 else cout
            gn(p + "a/group_norm", c0)
            kernel(p + "a/standardized_conv2d/kernel", 1, c0, cmid)
            gn(p + "b/group_norm", cmid)
            kernel(p + "b/standardized_conv2d/kernel", 3, cmid, cmid)
            # Weight standardization undoes a kernel's scale, so the residual branch
            # is damped before its last convolution instead, through GN's gamma
            # (as trained BiT nets keep it small): a random 101-layer stack
            # otherwise amplifies float32 rounding past 1e-5 in any two orders
            # of the same sums.
            gn(p + "c/group_norm", cmid, 0.02)
            kernel(p + "c/standardized_conv2d/kernel", 1, cmid, cout)
            if u == 1:
                kernel(p + "a/proj/standardized_conv2d/kernel", 1, c0, cout)
        cin = cout
    gn("resnet/group_norm", cin)
    kernel("resnet/head/conv2d/kernel", 1, cin, classes)
    w["resnet/head/conv2d/bias"] = (rng.standard_normal(classes) * 0.1).astype(np.float32)
    return w


def std_conv(x, kernel_hwio, stride=1, padding=0, eps=1e-10):
    wt = torch.from_numpy(kernel_hwio).permute(3, 2, 0, 1).to(x.dtype)
    v = wt.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    m = wt.mean(dim=(1, 2, 3), keepdim=True)
    return F.conv2d(x, (wt - m) / torch.sqrt(v + eps), None, stride, padding)


def bit_reference(w, units, x, eps):
    """BiT's forward written from the paper and the release's array names, in x's dtype."""
    def gn(x, name):
        return F.group_norm(x, 32, torch.from_numpy(w[name + "/gamma"]).to(x.dtype),
                            torch.from_numpy(w[name + "/beta"]).to(x.dtype), 1e-5)

    x = std_conv(x, w["resnet/root_block/standardized_conv2d/kernel"], 2, 3, eps)
    x = F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2)
    for b, n in enumerate(units):
        for u in range(1, n + 1):
            p = f"resnet/block{b + 1}/unit{u:02d}/"
            stride = 2 if (u == 1 and b > 0) else 1
            pre = F.relu(gn(x, p + "a/group_norm"))
            short = std_conv(pre, w[p + "a/proj/standardized_conv2d/kernel"], stride, 0, eps) if u == 1 else x
            y = std_conv(pre, w[p + "a/standardized_conv2d/kernel"], 1, 0, eps)
            y = std_conv(F.relu(gn(y, p + "b/group_norm")), w[p + "b/standardized_conv2d/kernel"], stride, 1, eps)
            y = std_conv(F.relu(gn(y, p + "c/group_norm")), w[p + "c/standardized_conv2d/kernel"], 1, 0, eps)
            x = y + short
    x = F.relu(gn(x, "resnet/group_norm")).mean(dim=(2, 3))
    k = torch.from_numpy(w["resnet/head/conv2d/kernel"]).to(x.dtype)[0, 0]  # cin x classes
    return x @ k + torch.from_numpy(w["resnet/head/conv2d/bias"]).to(x.dtype)


AUTHORS = {"gaia_resnet18": ("basic", [2, 2, 2, 2]), "gaia_resnet34": ("basic", [3, 4, 6, 3]),
           "gaia_resnet50": ("bottleneck", [3, 4, 6, 3])}


def random_authors_resnet(kind, blocks, classes, rng):
    """A state dict with the keys and shapes of the GAIA authors' CIFAR
    ResNet (networks/resnet.py), BatchNorm statistics included."""
    sd = {}

    def conv(name, cout, cin, k):
        sd[name + ".weight"] = torch.from_numpy(rng.standard_normal((cout, cin, k, k)).astype(np.float32) * (2.0 / (cin * k * k)) ** 0.5)

    def bn(name, c, scale=1.0):
        sd[name + ".weight"] = torch.from_numpy(((rng.random(c) + 0.5) * scale).astype(np.float32))
        sd[name + ".bias"] = torch.from_numpy((rng.standard_normal(c) * 0.1).astype(np.float32))
        sd[name + ".running_mean"] = torch.from_numpy((rng.standard_normal(c) * 0.1).astype(np.float32))
        sd[name + ".running_var"] = torch.from_numpy((rng.random(c) + 0.5).astype(np.float32))
        sd[name + ".num_batches_tracked"] = torch.tensor(100)

    conv("conv1", 64, 3, 3)
    bn("bn1", 64)
    cin, exp = 64, (1 if kind == "basic" else 4)
    for li, n in enumerate(blocks):
        planes = 64 * 2 ** li
        for b in range(n):
            p = f"layer{li + 1}.{b}."
            stride = 2 if (b == 0 and li > 0) else 1
            if kind == "basic":
                conv(p + "conv1", planes, cin, 3); bn(p + "bn1", planes)
                conv(p + "conv2", planes, planes, 3); bn(p + "bn2", planes, 0.3)
            else:
                conv(p + "conv1", planes, cin, 1); bn(p + "bn1", planes)
                conv(p + "conv2", planes, planes, 3); bn(p + "bn2", planes)
                conv(p + "conv3", 4 * planes, planes, 1); bn(p + "bn3", 4 * planes, 0.3)
            if stride != 1 or cin != exp * planes:
                conv(p + "shortcut.0", exp * planes, cin, 1); bn(p + "shortcut.1", exp * planes)
            cin = exp * planes
    sd["linear.weight"] = torch.from_numpy(rng.standard_normal((classes, cin)).astype(np.float32) * 0.05)
    sd["linear.bias"] = torch.from_numpy(rng.standard_normal(classes).astype(np.float32) * 0.1)
    return sd


def _bn(x, sd, name):
    return F.batch_norm(x, sd[name + ".running_mean"].to(x.dtype), sd[name + ".running_var"].to(x.dtype),
                        sd[name + ".weight"].to(x.dtype), sd[name + ".bias"].to(x.dtype), False, 0.0, 1e-5)


def _conv(x, sd, name, stride=1, padding=0):
    return F.conv2d(x, sd[name + ".weight"].to(x.dtype), None, stride, padding)


def authors_resnet_reference(sd, kind, blocks, x):
    """The authors' CIFAR ResNet forward, written from networks/resnet.py."""
    x = F.relu(_bn(_conv(x, sd, "conv1", 1, 1), sd, "bn1"))
    for li, n in enumerate(blocks):
        for b in range(n):
            p = f"layer{li + 1}.{b}."
            stride = 2 if (b == 0 and li > 0) else 1
            short = _bn(_conv(x, sd, p + "shortcut.0", stride), sd, p + "shortcut.1") if p + "shortcut.0.weight" in sd else x
            if kind == "basic":
                y = F.relu(_bn(_conv(x, sd, p + "conv1", stride, 1), sd, p + "bn1"))
                y = _bn(_conv(y, sd, p + "conv2", 1, 1), sd, p + "bn2")
            else:
                y = F.relu(_bn(_conv(x, sd, p + "conv1"), sd, p + "bn1"))
                y = F.relu(_bn(_conv(y, sd, p + "conv2", stride, 1), sd, p + "bn2"))
                y = _bn(_conv(y, sd, p + "conv3"), sd, p + "bn3")
            x = F.relu(y + short)
    h = F.avg_pool2d(x, 4).flatten(1)
    return h @ sd["linear.weight"].to(x.dtype).t() + sd["linear.bias"].to(x.dtype)


def random_wrn(depth, widen, classes, rng):
    """A state dict with the keys of the authors' WRN (networks/wresnet.py)."""
    sd = {}
    ch = [16, 16 * widen, 32 * widen, 64 * widen]
    n = (depth - 4) // 6

    def conv(name, cout, cin, k):
        sd[name + ".weight"] = torch.from_numpy(rng.standard_normal((cout, cin, k, k)).astype(np.float32) * (2.0 / (cin * k * k)) ** 0.5)

    def bn(name, c):
        sd[name + ".weight"] = torch.from_numpy((rng.random(c) + 0.5).astype(np.float32))
        sd[name + ".bias"] = torch.from_numpy((rng.standard_normal(c) * 0.1).astype(np.float32))
        sd[name + ".running_mean"] = torch.from_numpy((rng.standard_normal(c) * 0.1).astype(np.float32))
        sd[name + ".running_var"] = torch.from_numpy((rng.random(c) + 0.5).astype(np.float32))
        sd[name + ".num_batches_tracked"] = torch.tensor(100)

    conv("conv1", ch[0], 3, 3)
    for bi in range(3):
        for i in range(n):
            cin, cout = (ch[bi] if i == 0 else ch[bi + 1]), ch[bi + 1]
            p = f"block{bi + 1}.layer.{i}."
            bn(p + "bn1", cin)
            conv(p + "conv1", cout, cin, 3)
            bn(p + "bn2", cout)
            conv(p + "conv2", cout, cout, 3)
            sd[p + "conv2.weight"] *= 0.3
            if cin != cout:
                conv(p + "convShortcut", cout, cin, 1)
    bn("bn1", ch[3])
    sd["fc.weight"] = torch.from_numpy(rng.standard_normal((classes, ch[3])).astype(np.float32) * 0.05)
    sd["fc.bias"] = torch.zeros(classes)
    return sd


def wrn_reference(sd, depth, widen, x):
    """The authors' WRN forward, written from networks/wresnet.py (pre-activation)."""
    n = (depth - 4) // 6
    x = _conv(x, sd, "conv1", 1, 1)
    for bi in range(3):
        for i in range(n):
            p = f"block{bi + 1}.layer.{i}."
            stride = 2 if (i == 0 and bi > 0) else 1
            a = F.relu(_bn(x, sd, p + "bn1"))
            y = F.relu(_bn(_conv(a, sd, p + "conv1", stride, 1), sd, p + "bn2"))
            y = _conv(y, sd, p + "conv2", 1, 1)
            short = _conv(a, sd, p + "convShortcut", stride) if p + "convShortcut.weight" in sd else x
            x = short + y
    h = F.relu(_bn(x, sd, "bn1")).mean(dim=(2, 3))
    return h @ sd["fc.weight"].to(x.dtype).t() + sd["fc.bias"].to(x.dtype)


def check_authors_cifar(tmp, rng):
    """The GAIA authors' CIFAR models from checkpoints in their layout: a
    {'state_dict': ...} with DataParallel's module. prefix, and a plain state
    dict; scripted and traced; CIFAR-10 and CIFAR-100 heads."""
    import json
    x = torch.from_numpy(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    cases = [(a, k, b, c) for a, (k, b) in AUTHORS.items() for c in (10, 100)] + [("wrn_40_2", "wrn", (40, 2), 10), ("wrn_40_2", "wrn", (40, 2), 100)]
    for arch, kind, blocks, classes in cases:
        if kind == "wrn":
            sd = random_wrn(*blocks, classes, rng)
            want = wrn_reference(sd, *blocks, x)
            want64 = wrn_reference(sd, *blocks, x.double())
        else:
            sd = random_authors_resnet(kind, blocks, classes, rng)
            want = authors_resnet_reference(sd, kind, blocks, x)
            want64 = authors_resnet_reference(sd, kind, blocks, x.double())
        ckpt = os.path.join(tmp, f"{arch}_{classes}.pth")
        wrapped = classes == 100  # one layout each: {'state_dict': {'module.'...}} and plain
        torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 200} if wrapped else sd, ckpt)
        for trace in (False, True):
            out = os.path.join(tmp, f"{arch}_{classes}{'.trace' if trace else ''}.pt")
            export(["--arch", arch, "--num-classes", str(classes), "--weights", ckpt, "--out", out] + (["--trace"] if trace else []))
            with torch.no_grad():
                got = torch.jit.load(out)(x)
            check(f"{arch}, {classes} classes, from {'a wrapped' if wrapped else 'a plain'} state dict ({'traced' if trace else 'scripted'})",
                  got, want, want64=want64)
        with open(os.path.splitext(out)[0] + ".json") as f:
            meta = json.load(f)
        mean = [0.4914, 0.4822, 0.4465] if classes == 10 else [0.5071, 0.4867, 0.4408]
        std = [0.2023, 0.1994, 0.2010] if classes == 10 else [0.2675, 0.2565, 0.2761]
        assert meta["mean"] == mean and meta["std"] == std and meta["input_size"] == [3, 32, 32], meta
        assert meta["transform"] == "center-crop=32x32" and len(meta["class_names"]) == classes, meta
    print("test_export: the authors' CIFAR models record their normalization and center-crop=32x32")
    refuses(["--arch", "gaia_resnet34", "--num-classes", "10", "--weights", os.path.join(tmp, "gaia_resnet18_10.pth"),
             "--out", os.path.join(tmp, "e.pt")], "does not fit gaia_resnet34: missing ['layer1.2.conv1.weight'")


def npz_to_timm(w, units):
    """The same weights as a timm resnetv2 state dict (OIHW kernels, head as a 1x1 conv)."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(3, 2, 0, 1) if a.ndim == 4 else a))
    sd = {"stem.conv.weight": t(w["resnet/root_block/standardized_conv2d/kernel"]),
          "norm.weight": t(w["resnet/group_norm/gamma"]), "norm.bias": t(w["resnet/group_norm/beta"]),
          "head.fc.weight": t(w["resnet/head/conv2d/kernel"]), "head.fc.bias": t(w["resnet/head/conv2d/bias"])}
    for b, n in enumerate(units):
        for u in range(1, n + 1):
            p, q = f"resnet/block{b + 1}/unit{u:02d}/", f"stages.{b}.blocks.{u - 1}."
            for i, part in enumerate("abc", start=1):
                sd[f"{q}conv{i}.weight"] = t(w[f"{p}{part}/standardized_conv2d/kernel"])
                sd[f"{q}norm{i}.weight"] = t(w[f"{p}{part}/group_norm/gamma"])
                sd[f"{q}norm{i}.bias"] = t(w[f"{p}{part}/group_norm/beta"])
            if u == 1:
                sd[f"{q}downsample.conv.weight"] = t(w[f"{p}a/proj/standardized_conv2d/kernel"])
    return sd


def export(args):
    r = subprocess.run([sys.executable, EXPORT] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"export.py {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r


def check(name, got, want, tol=1e-5, want64=None):
    """got against the float32 reference within tol; against float64 for information."""
    err = ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()
    status = "ok" if err <= tol else "FAIL"
    extra = ""
    if want64 is not None:
        extra = f"; {((got.double() - want64).abs().max() / want64.abs().max()).item():.1e} from float64"
    print(f"test_export: {name}: max relative difference {err:.2e} ({status}){extra}")
    if err > tol:
        raise SystemExit(f"{name}: TorchScript output differs from the reference by {err:.2e} relative")


def refuses(args, needle):
    r = subprocess.run([sys.executable, EXPORT] + args, capture_output=True, text=True)
    if r.returncode == 0 or needle not in r.stdout + r.stderr:
        raise SystemExit(f"export.py {' '.join(args)}: expected a failure naming {needle!r}, got:\n{r.stdout}{r.stderr}")
    print(f"test_export: refused as expected: {needle}")


def main():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((2, 3, 64, 64)).astype(np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("bit_s_r50x1", "bit_s_r101x1"):
            w = random_bit_npz(UNITS[arch], 10, rng)
            npz = os.path.join(tmp, arch + ".npz")
            np.savez(npz, **w)
            want = bit_reference(w, UNITS[arch], x, 1e-10)
            want64 = bit_reference(w, UNITS[arch], x.double(), 1e-10)
            for trace in (False, True):
                out = os.path.join(tmp, f"{arch}{'.trace' if trace else ''}.pt")
                export(["--arch", arch, "--num-classes", "10", "--weights", npz, "--out", out] + (["--trace"] if trace else []))
                with torch.no_grad():
                    got = torch.jit.load(out)(x)
                check(f"{arch} from BiT .npz ({'traced' if trace else 'scripted'})", got, want, want64=want64)
            timm = os.path.join(tmp, arch + ".timm.pth")
            torch.save(npz_to_timm(w, UNITS[arch]), timm)
            out = os.path.join(tmp, arch + ".timm.pt")
            export(["--arch", arch, "--num-classes", "10", "--weights", timm, "--out", out])
            with torch.no_grad():
                got = torch.jit.load(out)(x)
            check(f"{arch} from a timm state dict (eps 1e-8)", got, bit_reference(w, UNITS[arch], x, 1e-8))
        import json
        with open(os.path.join(tmp, "bit_s_r101x1.json")) as f:
            meta = json.load(f)
        assert meta["input_size"] == [3, 480, 480] and meta["mean"] == [0.5] * 3 and meta["transform"] == "resize=480x480", meta
        out = os.path.join(tmp, "bit224.pt")
        export(["--arch", "bit_s_r50x1", "--preprocess", "imagenet224", "--out", out])
        with open(os.path.join(tmp, "bit224.json")) as f:
            meta = json.load(f)
        assert meta["input_size"] == [3, 224, 224] and meta["transform"] == "resize=256,center-crop=224", meta
        print("test_export: MODEL.json records bit480 and imagenet224 preprocessing")

        # ResNet-50 from a torchvision-layout state dict, against the eager model holding it.
        sys.path.insert(0, HERE)
        import models
        torch.manual_seed(3)
        ref, _, _, _ = models.build("resnet50", 1000)
        models.randomize_norm_stats(ref, 3)
        ref.eval()
        pth = os.path.join(tmp, "resnet50.pth")
        torch.save(ref.state_dict(), pth)
        out = os.path.join(tmp, "resnet50.pt")
        export(["--arch", "resnet50", "--weights", pth, "--preprocess", "imagenet224", "--out", out])
        with torch.no_grad():
            got = torch.jit.load(out)(x)
            want = ref(x)
        check("resnet50 from a torchvision .pth", got, want)

        check_authors_cifar(tmp, rng)

        # Wrong files are refused, naming the problem.
        del w["resnet/block2/unit01/b/group_norm/gamma"]
        np.savez(os.path.join(tmp, "broken.npz"), **w)
        refuses(["--arch", "bit_s_r101x1", "--num-classes", "10", "--weights", os.path.join(tmp, "broken.npz"), "--out", os.path.join(tmp, "b.pt")],
                "resnet/block2/unit01/b/group_norm/gamma")
        refuses(["--arch", "bit_s_r50x1", "--num-classes", "10", "--weights", timm, "--out", os.path.join(tmp, "c.pt")],
                "no place for, such as ['stages.2.blocks.10")
        refuses(["--arch", "bit_s_r101x1", "--weights", timm, "--out", os.path.join(tmp, "c.pt")],
                "head.conv.weight: the checkpoint's tensor has shape [10, 2048, 1, 1], the model wants [1000, 2048, 1, 1]")
        refuses(["--arch", "resnet50", "--weights", npz, "--out", os.path.join(tmp, "d.pt")], "npz")


if __name__ == "__main__":
    main()
