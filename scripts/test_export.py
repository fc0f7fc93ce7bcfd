#!/usr/bin/env python3
"""Checks scripts/export.py on the checkpoint layouts users have, without
downloading any: weight files of the same layout are built from random values
(the official BiT release .npz with TensorFlow HWIO kernels, a timm resnetv2
state dict, a torchvision ResNet-50 .pth), exported, and the TorchScript output
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
