#!/usr/bin/env python3
"""Make the TorchScript files and eager references the Go tests compare with.

    scripts/make_testdata.py --out build/testdata [--archs resnet18,cifar_resnet20]

For each architecture: ARCH.script.pt and ARCH.trace.pt (seeded random
weights with non-trivial BatchNorm statistics, MODEL.json beside each), and
ARCH.ref.npz with the input batch, the logits, F, h and the tap gradients of
reference.tap_gradients, plus ARCH.ref.json listing the normalization taps in
order. Everything is written by the same torch that the Go side links, so the
files load there whatever its version. Files already made by this torch
version are kept.
"""

import argparse
import warnings
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import feature_reference  # noqa: E402
import models  # noqa: E402
import reference  # noqa: E402

DEFAULT_ARCHS = ["cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56",
                 "resnet18", "resnet34", "resnet50", "densenet121", "bit_s_r50x1",
                 "gaia_resnet18", "gaia_resnet50", "wrn_40_2"]
CIFAR_SIZED = ("cifar", "gaia_", "wrn_")  # 32 x 32 inputs


class PlainCNN(nn.Module):
    """No normalization layers: the taps fall back to the ReLU inputs."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU(inplace=True))
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class RaisingCNN(nn.Module):
    """A small BatchNorm CNN whose forward raises for batches over 4 (the
    serve tests' model that fails its warm-up at a larger max batch)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        if x.size(0) > 4:
            raise RuntimeError("raising_cnn: batches over 4 are refused")
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class DegenerateCNN(nn.Module):
    """conv, BatchNorm with bias -100 (every ReLU off), a zero classifier."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():
            self.bn.bias.fill_(-100.0)
            self.fc.weight.zero_()
            self.fc.bias.zero_()

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def plain_reference(model, x):
    """Gradients of sum max logit at the ReLU inputs (the conv outputs)."""
    vals, names = [], []

    def hook(name):
        def f(mod, inp, out):
            names.append(name)
            vals.append(out)
            return out.clone()
        return f
    hs = [model.features[i].register_forward_hook(hook(f"features.{i}:relu_input")) for i in (0, 2)]
    z = model(x)
    gz = torch.autograd.grad(z.max(1).values.sum(), vals)
    for h in hs:
        h.remove()
    return names, z.detach(), [g.detach() for g in gz]


def save_npz(path, arrays):
    tmp = path + ".tmp.npz"
    np.savez(tmp, **{k: np.ascontiguousarray(v.numpy() if torch.is_tensor(v) else v, dtype=np.float32)
                     for k, v in arrays.items()})
    os.replace(tmp, path)


def make(arch, out, seed):
    stamp = os.path.join(out, arch + ".ref.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f).get("torch_version") == torch.__version__:
                return
    torch.manual_seed(seed)
    if arch == "raising_cnn":
        torch.jit.script(RaisingCNN().eval()).save(os.path.join(out, "raising_cnn.pt"))
        meta = {"names": ["bn"], "torch_version": torch.__version__}
        with open(os.path.join(out, "raising_cnn.json"), "w") as f:
            json.dump({"arch": "raising_cnn", "num_classes": 10, "input_size": [1, 28, 28],
                       "mean": [0.5], "std": [0.5]}, f)
        with open(stamp, "w") as f:
            json.dump(meta, f)
        print("testdata: raising_cnn", flush=True)
        return
    if arch == "degenerate_cnn":
        # Every ReLU off (a BatchNorm bias of -100) and a zero classifier:
        # the output gradient o and GAIA-A's inner gradients both vanish
        # (GAIA-A's 0/0, which gaia scores +Inf).
        m = DegenerateCNN().eval()
        torch.jit.script(m).save(os.path.join(out, "degenerate_cnn.pt"))
        with open(os.path.join(out, "degenerate_cnn.json"), "w") as f:
            json.dump({"arch": "degenerate_cnn", "num_classes": 10, "input_size": [1, 28, 28],
                       "mean": [0.5], "std": [0.5]}, f)
        with open(stamp, "w") as f:
            json.dump({"names": ["bn"], "torch_version": torch.__version__}, f)
        print("testdata: degenerate_cnn", flush=True)
        return
    if arch == "plain_cnn":
        model = PlainCNN().eval()
        x = torch.randn(2, 3, 16, 16)
        for kind in ("script", "trace"):
            sm = torch.jit.script(model) if kind == "script" else torch.jit.trace(model, x)
            sm.save(os.path.join(out, f"{arch}.{kind}.pt"))
        names, z, gz = plain_reference(model, x)
        arrays = {"x": x, "z": z}
        arrays.update({"gz_" + n: g for n, g in zip(names, gz)})
        save_npz(os.path.join(out, arch + ".ref.npz"), arrays)
        meta = {"names": names, "torch_version": torch.__version__}
    else:
        size = 32 if arch.startswith(CIFAR_SIZED) else 64
        model = None
        for kind in ("script", "trace"):
            model = export.export(arch, os.path.join(out, f"{arch}.{kind}.pt"), num_classes=10,
                                  trace=(kind == "trace"), seed=seed, randomize_norm=True)
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed + 1))
        ref = reference.tap_gradients(model, arch, x)
        with torch.no_grad():
            direct = model(x)
        if not torch.allclose(direct, ref["z"], rtol=1e-5, atol=1e-5):
            raise SystemExit(f"{arch}: reference split does not reproduce the model's logits")
        arrays = {"x": x, "z": ref["z"], "h": ref["h"], "F": ref["F"], "ga1": ref["ga1"]}
        arrays.update({"gz_" + n: g for n, g in zip(ref["names"], ref["gz"])})
        arrays.update({"ga2_" + n: g for n, g in zip(ref["names"], ref["ga2"])})
        save_npz(os.path.join(out, arch + ".ref.npz"), arrays)
        meta = {"names": ref["names"], "torch_version": torch.__version__}
    with open(stamp, "w") as f:
        json.dump(meta, f, indent=1)
    print(f"testdata: {arch} ({len(meta['names'])} norm taps)", flush=True)


SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def cifar_images(n):
    """The first n CIFAR-10 test images of ../shared/data, as floats in [0, 1], and labels."""
    path = os.path.join(SHARED, "cifar10", "test_batch_first1000.bin")
    raw = np.fromfile(path, dtype=np.uint8, count=n * 3073).reshape(n, 3073)
    return torch.from_numpy(raw[:, 1:].reshape(n, 3, 32, 32).astype(np.float32) / 255.0), raw[:, 0]


# The detector references' format; a stamp of another version is remade.
DET_REFS_VERSION = 3


def cifar_train_jpegs(per_class):
    """The first per_class CIFAR-10 training JPEGs of each class of
    ../shared/data, decoded by Pillow (as torchvision's ImageFolder), as
    floats in [0, 1], and their labels (the sorted class folders)."""
    from PIL import Image
    root = os.path.join(SHARED, "cifar10", "train-jpeg-5000")
    imgs, labels = [], []
    for label, cls in enumerate(sorted(os.listdir(root))):
        for name in sorted(os.listdir(os.path.join(root, cls)))[:per_class]:
            with Image.open(os.path.join(root, cls, name)) as im:
                imgs.append(np.asarray(im.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0)
            labels.append(label)
    return torch.from_numpy(np.stack(imgs)), np.array(labels)


def make_detector_refs(out, seed):
    """ARCH.det.npz: a batch and every detector's scores from
    reference.detector_scores, and a fit set (fit_x, fit_y) with the
    feature-based detectors' scores from feature_reference.feature_scores."""
    jobs = [("resnet18", "resnet18.script.pt"), ("densenet121", "densenet121.script.pt"),
            ("bit_s_r50x1", "bit_s_r50x1.script.pt"),
            ("cifar_resnet20", "cifar_resnet20.script.pt"),
            ("gaia_resnet18", "gaia_resnet18.script.pt"), ("wrn_40_2", "wrn_40_2.script.pt")]
    weights = os.path.join(SHARED, "cifar10", "resnet20-12fca82f.th")
    if os.path.exists(weights):
        jobs.append(("cifar10_resnet20", "cifar10_resnet20.pt"))
    for name, model_file in jobs:
        if name != "cifar10_resnet20" and not os.path.exists(os.path.join(out, model_file)):
            continue  # not among --archs
        stamp = os.path.join(out, name + ".det.json")
        if os.path.exists(stamp):
            with open(stamp) as f:
                st = json.load(f)
                if st.get("torch_version") == torch.__version__ and st.get("version") == DET_REFS_VERSION:
                    continue
        if name == "cifar10_resnet20":
            arch = "cifar_resnet20"
            model = export.export(arch, os.path.join(out, model_file), num_classes=10, weights=weights,
                                  trust_pickle=True)  # the project's own copy of a known checkpoint
            imgs, labels = cifar_images(16)
            mean = torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1)
            x = (imgs - mean) / std
            fit_imgs, fit_y = cifar_train_jpegs(50)
            fit_x = (fit_imgs - mean) / std
            settings = {}
        else:
            arch = name
            torch.manual_seed(seed)
            model, _, _, _ = models.build(arch, 10)
            models.randomize_norm_stats(model, seed)  # the weights of ARCH.script.pt
            size = 32 if arch.startswith(CIFAR_SIZED) else 64
            x = torch.randn(6, 3, size, size, generator=torch.Generator().manual_seed(seed + 2))
            fit_x = torch.randn(300, 3, size, size, generator=torch.Generator().manual_seed(seed + 3))
            fit_y = np.random.default_rng(seed + 4).integers(0, 10, 300)
            # A fit of 300 random images spans fewer dimensions than the big
            # models' features: ViM's subspace is kept inside it.
            settings = {} if arch.startswith(CIFAR_SIZED) and arch != "gaia_resnet18" else {"vim-dim": 64}
        model.eval()
        sc = reference.detector_scores(model, arch, x, models.IMAGENET_STD)
        fsc = feature_reference.feature_scores(model, arch, fit_x, fit_y, x,
                                               vim_dim=settings.get("vim-dim", 0))
        arrays = {"x": x, "fit_x": fit_x, "fit_y": torch.from_numpy(fit_y.astype(np.float32))}
        arrays.update({"score_" + k: v for k, v in sc.items()})
        arrays.update({"score_" + k: v for k, v in fsc.items()})
        if arch.startswith("bit_"):  # GAIA-Z exactly as the authors' code runs it on BiT
            arrays["authors_gaia_z"] = reference.authors_bit_gaia_z(model, x)
        save_npz(os.path.join(out, name + ".det.npz"), arrays)
        with open(stamp, "w") as f:
            json.dump({"model": model_file, "arch": arch, "std": models.IMAGENET_STD, "settings": settings,
                       "torch_version": torch.__version__, "version": DET_REFS_VERSION}, f)
        print(f"testdata: detector reference {name}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--archs", default=",".join(DEFAULT_ARCHS + ["plain_cnn", "raising_cnn", "degenerate_cnn"]))
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for arch in a.archs.split(","):
        make(arch.strip(), a.out, a.seed)
    make_detector_refs(a.out, a.seed)


if __name__ == "__main__":
    main()
