#!/usr/bin/env python3
"""Time the detectors the way the authors' PyTorch code runs them, for
`make bench-compare`.

    scripts/bench_reference.py --model m.pt --arch cifar_resnet20 --batch 128 --seconds 3 --json

Eager PyTorch on the same TorchScript file's weights (loaded into the eager
architecture of scripts/models.py), the same input shape, batch and thread
count as `gaia speed`:

- GAIA-Z, GAIA-A: forward hooks on the normalization layers that register
  tensor hooks storing each gradient (as JGEthanChen/GAIA-OOD's hook.py does),
  then `.backward()` with parameter gradients on: one call for GAIA-Z, two for
  GAIA-A (log-softmax sum, then the pooled-feature sum);
- ODIN: Liang et al.'s input perturbation (a backward to the input, a second
  forward), temperature 1000;
- GradNorm: one forward and one backward per sample, the L1 norm of the
  classifier weight's gradient, as Huang et al.'s code does;
- MSP, MaxLogit, Energy: one forward under no_grad;
- the references: forward; forward + backward to the input only; forward +
  backward to every parameter.

Prints images/s per workload (JSON with --json).
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import reference  # noqa: E402


class GradStore:
    """The authors' hook style: forward hooks register tensor hooks that keep gradients."""

    def __init__(self, mods):
        self.grads = {}
        self.mods = mods
        self.handles = []

    def __enter__(self):
        self.grads.clear()
        self.handles = [m.register_forward_hook(self._fwd(n)) for n, m in self.mods]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def _fwd(self, name):
        def hook(module, inp, out):
            def keep(g):
                self.grads[name] = g
            out.register_hook(keep)
        return hook


def workloads(model, arch, x):
    norms = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    prefixes = reference.gaia_a_prefixes(arch)
    last = [(n, m) for n, m in norms if n.startswith(prefixes) or n in prefixes]
    features, head = models.features_and_head(model, arch)
    fc = reference.classifier_of(model, arch)
    store_z = GradStore(norms)
    store_a = GradStore(last)

    def gaia_z():
        model.zero_grad()
        with store_z:
            z = model(x)
        z.max(1).values.sum().backward()
        num = 0
        ch = 0
        for g in store_z.grads.values():
            num = num + ((g != 0).float().mean((2, 3)) ** 2).sum(1)
            ch += g.shape[1]
        return (num / ch).detach()

    def gaia_a():
        model.zero_grad()
        with store_a:
            f = features(x)
        f_grad = {}
        f.register_hook(lambda g: f_grad.__setitem__("F", g))
        h, z = head(f)
        torch.log_softmax(z, 1).sum().backward(retain_graph=True)
        o = f_grad["F"].mean((2, 3)).abs().mean(1).sqrt()
        model.zero_grad()
        h.sum().backward()
        num = 0
        ch = 0
        for g in store_a.grads.values():
            num = num + ((g.mean((2, 3)).abs() / o[:, None]) ** 2).sum(1)
            ch += g.shape[1]
        return (num / ch).detach()

    def odin():
        xi = x.clone().requires_grad_(True)
        z = model(xi)
        loss = F.cross_entropy(z / 1000.0, z.argmax(1))
        loss.backward()
        step = (torch.ge(xi.grad, 0).float() - 0.5) * 2 / torch.tensor(models.IMAGENET_STD[:x.shape[1]]).view(1, -1, 1, 1)
        with torch.no_grad():
            zp = model(x - 0.0014 * step)
        return -torch.softmax(zp / 1000.0, 1).max(1).values

    def gradnorm():
        out = []
        for i in range(x.shape[0]):
            model.zero_grad()
            zi = model(x[i:i + 1])
            loss = torch.sum(-torch.ones_like(zi) / zi.shape[1] * torch.log_softmax(zi, 1), dim=-1).mean()
            loss.backward()
            out.append(fc.weight.grad.abs().sum().item())
        return out

    def conf(kind):
        def run():
            with torch.no_grad():
                z = model(x)
                if kind == "msp":
                    return -torch.softmax(z, 1).max(1).values
                if kind == "maxlogit":
                    return -z.max(1).values
                return -torch.logsumexp(z, 1)
        return run

    def ref_forward():
        with torch.no_grad():
            return model(x)

    def ref_input():
        xi = x.clone().requires_grad_(True)
        z = model(xi)
        return torch.autograd.grad(z.max(1).values.sum(), xi)[0]

    def ref_params():
        model.zero_grad()
        model(x).max(1).values.sum().backward()

    return {
        "forward": ref_forward,
        "forward+backward(input)": ref_input,
        "forward+backward(params)": ref_params,
        "gaia-z": gaia_z,
        "gaia-a": gaia_a,
        "msp": conf("msp"),
        "maxlogit": conf("maxlogit"),
        "energy": conf("energy"),
        "odin": odin,
        "gradnorm": gradnorm,
    }


def timeit(fn, seconds):
    for _ in range(2):
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= seconds and n >= 3:
            return n, el


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the TorchScript file gaia runs (its weights are used)")
    p.add_argument("--arch", required=True, choices=models.ARCHS)
    p.add_argument("--input", default=None, help="CxHxW (default: the model's JSON)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (default: all CPUs)")
    p.add_argument("--workloads", default="")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    meta = json.load(open(os.path.splitext(a.model)[0] + ".json"))
    shape = [int(v) for v in a.input.split("x")] if a.input else meta["input_size"]
    model, _, _, _ = models.build(a.arch, meta["num_classes"])
    model.load_state_dict(torch.jit.load(a.model).state_dict())
    model.eval()
    x = torch.randn([a.batch] + shape, generator=torch.Generator().manual_seed(1))
    wl = workloads(model, a.arch, x)
    names = [n.strip() for n in a.workloads.split(",") if n.strip()] or list(wl)
    for name in names:  # warm-up, as gaia speed does: every workload before any is timed
        timeit(wl[name], 0.0)
    out = []
    for name in names:
        n, el = timeit(wl[name], a.seconds)
        out.append({"name": name, "batch": a.batch, "iters": n, "seconds": el, "images_per_sec": n * a.batch / el})
        if not a.json:
            print(f"{name}: {n * a.batch / el:.1f} images/s", flush=True)
    if a.json:
        json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": out}, sys.stdout)
        print()


if __name__ == "__main__":
    main()
