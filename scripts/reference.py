"""Eager-PyTorch reference for taps and their gradients, written from
GAIA-SPEC.md, independent of the Go/C++ graph machinery.

Normalization outputs are caught with forward hooks, as the authors' code
does. Each hook keeps the module's output and hands the network a copy, so
that later in-place ReLUs and additions never touch the kept value: its
gradient is the gradient with respect to the normalization output itself,
before the ReLU. F (the final feature map) and h (the classifier input) come
from models.features_and_head, a split of the forward written per family.
"""

import torch
import torch.nn as nn

import models

NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)


class NormTaps:
    """Forward hooks on every normalization module of a model."""

    def __init__(self, model):
        self.values = {}
        self.order = []
        self.handles = []
        for name, mod in model.named_modules():
            if isinstance(mod, NORM_TYPES):
                self.handles.append(mod.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, inputs, output):
            if name not in self.values:
                self.order.append(name)
            self.values[name] = output
            return output.clone()
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def tap_gradients(model, arch, x):
    """The forward and the three gradients GAIA needs, all per sample:

    z:   logits
    gz:  d(sum_n max_k z_nk) / d(norm output), every norm tap   (GAIA-Z)
    ga1: d(sum log softmax(z)) / dF                               (GAIA-A, outer)
    ga2: d(sum h) / d(norm output), every norm tap                (GAIA-A, inner)
    """
    model.eval()
    taps = NormTaps(model)
    try:
        features, head = models.features_and_head(model, arch)
        with torch.enable_grad():
            x = x.clone().requires_grad_(True)
            f = features(x)
            h, z = head(f)
            names = list(taps.order)
            vals = [taps.values[n] for n in names]
            gz = torch.autograd.grad(z.max(1).values.sum(), vals, retain_graph=True)
            ga1 = torch.autograd.grad(torch.log_softmax(z, 1).sum(), [f], retain_graph=True)[0]
            ga2 = torch.autograd.grad(h.sum(), vals, allow_unused=True)
        ga2 = [g if g is not None else torch.zeros_like(v) for g, v in zip(ga2, vals)]
        return {
            "names": names,
            "z": z.detach(),
            "h": h.detach(),
            "F": f.detach(),
            "gz": [g.detach() for g in gz],
            "ga1": ga1.detach(),
            "ga2": [g.detach() for g in ga2],
        }
    finally:
        taps.close()
