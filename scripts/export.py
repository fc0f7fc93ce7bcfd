#!/usr/bin/env python3
"""Export an image classifier to TorchScript for gaia, with MODEL.json beside it.

    scripts/export.py --arch cifar_resnet20 --weights resnet20-12fca82f.th --out m.pt
    scripts/export.py --arch resnet50 --num-classes 1000 --trace --out r50.pt
    scripts/export.py --arch gaia_resnet34 --num-classes 100 --weights cifar100_resnet34.pth --out r34.pt

The GAIA authors' CIFAR models (JGEthanChen/GAIA-OOD networks/resnet.py and
networks/wresnet.py) are gaia_resnet18, gaia_resnet34, gaia_resnet50 and
wrn_40_2: their checkpoints load as they are, and MODEL.json records their
normalization (CIFAR-10's for 10 classes, CIFAR-100's for 100) and their
preprocessing (center-crop=32x32, no resize).

--weights takes a plain state dict or a checkpoint dict with a `state_dict`
entry; a `module.` prefix (DataParallel) is removed. Without --weights the model
keeps its random initialization (seeded by --seed). Nothing is downloaded.
The file is made by torch.jit.script, or by torch.jit.trace with --trace.
MODEL.json records the architecture, input size, mean/std, class names and the
torch version that wrote the file.
"""

import argparse
import json
import os
import pickle
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402


def load_state_dict(path, trust_pickle=False):
    if path.endswith(".npz"):
        raise SystemExit(f"{path}: a NumPy .npz (BiT's release format) is read for the bit_* architectures only; "
                         f"this architecture takes a PyTorch state dict (.pth, .th)")
    try:
        return _load_state_dict(path, trust_pickle)
    except (RuntimeError, EOFError, OSError) as e:
        raise SystemExit(f"{path}: not a readable PyTorch checkpoint ({str(e).splitlines()[0][:160]})")


def _load_state_dict(path, trust_pickle):
    if trust_pickle:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise SystemExit(f"{path}: this checkpoint holds more than tensors and plain values, which a safe "
                             f"load refuses ({str(e).splitlines()[-1][:120]}); if you trust the file, "
                             f"rerun with --trust-pickle")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: expected a state dict or a checkpoint with 'state_dict', found {type(obj).__name__}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


PREPROCESS = {
    # The GAIA/GradNorm/MOS ImageNet code for BiT: a plain 480 x 480 resize, mean = std = 0.5.
    "bit480": ([3, 480, 480], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], "resize=480x480"),
    # The standard ImageNet evaluation: shorter side to 256, center crop 224, ImageNet statistics.
    "imagenet224": ([3, 224, 224], models.IMAGENET_MEAN, models.IMAGENET_STD, "resize=256,center-crop=224"),
}


def bit_weights(path, model, trust_pickle=False):
    """A BiT checkpoint as this export's state dict: the official release (.npz)
    or a timm resnetv2 state dict (.pth, .bin, .safetensors is not read)."""
    if path.endswith(".npz"):
        import numpy as np
        with np.load(path) as z:
            weights = {k: z[k] for k in z.files}
        try:
            return models.bit_state_dict_from_npz(weights, model), 1e-10
        except KeyError as e:
            raise SystemExit(f"{path}: not a BiT release for this architecture: no array {e}")
    sd = load_state_dict(path, trust_pickle)
    if "stem.conv.weight" in sd:
        try:
            return models.bit_state_dict_from_timm(sd, model), 1e-8
        except KeyError as e:
            raise SystemExit(f"{path}: not a timm resnetv2 state dict for this architecture: no key {e}")
    return sd, None


def export(arch, out, num_classes=10, weights=None, trace=False, seed=0, randomize_norm=False,
           class_names=None, trust_pickle=False, preprocess=None):
    """Build, optionally load weights, script or trace, save; returns the eager model."""
    torch.manual_seed(seed)
    model, input_size, mean, std = models.build(arch, num_classes)
    transform = "resize=480x480" if arch in models.BIT_ARCHS else None
    if arch in models.AUTHORS_CIFAR:
        transform = "center-crop=32x32"  # the authors' data/datasets.py: CenterCrop(32), no resize
    if preprocess:
        input_size, mean, std, transform = PREPROCESS[preprocess]
    if weights and arch in models.BIT_ARCHS:
        sd, eps = bit_weights(weights, model, trust_pickle)
        if eps is not None:  # the checkpoint's own weight-standardization epsilon
            for mod in model.modules():
                if isinstance(mod, models.StdConv2d):
                    mod.eps = eps
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise SystemExit(f"{weights}: does not fit {arch}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    elif weights:
        sd = load_state_dict(weights, trust_pickle)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise SystemExit(f"{weights}: does not fit {arch}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    elif randomize_norm:
        models.randomize_norm_stats(model, seed)
    model.eval()
    if trace:
        example = torch.zeros([1] + input_size)
        with torch.no_grad():
            sm = torch.jit.trace(model, example)
    else:
        sm = torch.jit.script(model)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    sm.save(out)
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
        if (arch in models.CIFAR_DEPTHS or arch in models.AUTHORS_CIFAR) and num_classes == 10:
            class_names = models.CIFAR10_CLASSES
        elif arch in models.AUTHORS_CIFAR and num_classes == 100:
            class_names = models.CIFAR100_CLASSES
    meta = {
        "arch": arch,
        "num_classes": num_classes,
        "input_size": input_size,
        "mean": mean,
        "std": std,
        "class_names": class_names,
        "exported_with": "trace" if trace else "script",
        "torch_version": torch.__version__,
        "weights": os.path.basename(weights) if weights else None,
    }
    if transform:
        meta["transform"] = transform
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", required=True, choices=models.ARCHS)
    p.add_argument("--weights", help="state dict or checkpoint (.pth, .th)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classes (default: 1000 for torchvision archs, 10 otherwise)")
    p.add_argument("--trace", action="store_true", help="torch.jit.trace instead of torch.jit.script")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust-pickle", action="store_true",
                   help="load a checkpoint that holds more than tensors (full unpickling: trusted files only)")
    p.add_argument("--preprocess", choices=sorted(PREPROCESS),
                   help="input size, mean/std and image transform written to MODEL.json: bit480 (BiT's, "
                        "the default for bit_*) or imagenet224 (resize 256, center crop 224, ImageNet mean/std)")
    p.add_argument("--out", required=True, help="the TorchScript file to write (MODEL.json goes beside it)")
    a = p.parse_args()
    if a.num_classes is None:
        a.num_classes = 1000 if a.arch in models.TORCHVISION or a.arch in models.BIT_ARCHS else 10
    if a.weights and not os.path.exists(a.weights):
        raise SystemExit(f"{a.weights}: no such file")
    export(a.arch, a.out, a.num_classes, a.weights, a.trace, a.seed, trust_pickle=a.trust_pickle,
           preprocess=a.preprocess)
    print(f"wrote {a.out} and {os.path.splitext(a.out)[0]}.json ({a.arch}, "
          f"{'traced' if a.trace else 'scripted'}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
