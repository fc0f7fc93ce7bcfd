"""Eager-PyTorch reference for taps and their gradients, written from
docs/method.md, independent of the Go/C++ graph machinery.

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


def gaia_a_prefixes(arch):
    """The normalization layers GAIA-A reads, by family (docs/method.md): the
    last two stages. DenseNet's stages are its dense blocks, each with the
    transition after it; norm5 closes the last block."""
    if arch.startswith("resnet"):
        return ("layer3.", "layer4.")
    if arch.startswith("cifar_resnet") or arch == "mnist_resnet":
        return ("layer2.", "layer3.")
    if arch.startswith("densenet"):
        return ("features.denseblock3.", "features.transition3.", "features.denseblock4.", "features.norm5")
    if arch.startswith("gaia_resnet"):
        return ("layer3.", "layer4.")  # the authors' hook.py: layer3 and layer4's BatchNorms
    if arch.startswith("wrn_"):
        return ("",)  # the authors' hook.py: every BatchNorm
    if arch.startswith("bit_"):
        return ("body.block4.",)  # the authors' BiT choice: the GroupNorms of the last block
    raise ValueError(arch)


def gaia_z_prefixes(arch):
    """GAIA-Z's taps by family: every normalization layer, but for BiT the
    GroupNorms of body.block4, as the authors' `-hook before_head` hooks
    (their pooled before_head tap only adds a constant: docs/design.md)."""
    if arch.startswith("bit_"):
        return ("body.block4.",)
    return ("",)


def gaia_a_pooled(arch):
    """Whether the authors take GAIA-A's output component at the pooled
    features (WRN: AdaptAvgPool; BiT: before_head) rather than at the map
    before the pooling (their ResNets: layer4): o^2 is then H*W times the
    map's."""
    return arch.startswith("wrn_") or arch.startswith("bit_")


def detector_scores(model, arch, x, std, odin_t=1000.0, odin_eps=0.0014, energy_t=1.0):
    """Every detector's OOD score (higher = more OOD), the authors' semantics
    in eager PyTorch: forward hooks for the GAIA taps, ODIN's perturbation as
    Liang et al.'s code does it, GradNorm with one backward per sample on the
    classifier weight as Huang et al.'s code does it."""
    model.eval()
    out = {}
    ref = tap_gradients(model, arch, x)
    z = ref["z"].double()
    sm = torch.softmax(z, 1)
    out["msp"] = -sm.max(1).values
    out["maxlogit"] = -z.max(1).values
    out["energy"] = -energy_t * torch.logsumexp(z / energy_t, 1)
    # GAIA-Z: every normalization tap (BiT: block4's).
    num = torch.zeros(x.shape[0], dtype=torch.float64)
    channels = 0
    for name, g in zip(ref["names"], ref["gz"]):
        if not name.startswith(gaia_z_prefixes(arch)):
            continue
        r = (g != 0).double().mean(dim=(2, 3))
        num += (r ** 2).sum(1)
        channels += g.shape[1]
    out["gaia-z"] = num / channels
    # GAIA-A: output component from F, inner component from the last two stages.
    o2 = ref["ga1"].double().mean(dim=(2, 3)).abs().mean(1)
    if gaia_a_pooled(arch):  # the gradient at the pooled features: H*W times the map's mean
        o2 = o2 * (ref["ga1"].shape[2] * ref["ga1"].shape[3])
    o = o2.sqrt()
    prefixes = gaia_a_prefixes(arch)
    num = torch.zeros(x.shape[0], dtype=torch.float64)
    channels = 0
    for name, g in zip(ref["names"], ref["ga2"]):
        if not name.startswith(prefixes) and name not in prefixes:
            continue
        gm = g.double().mean(dim=(2, 3)).abs()
        num += ((gm / o[:, None]) ** 2).sum(1)
        channels += g.shape[1]
    out["gaia-a"] = num / channels
    # ODIN.
    xi = x.clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xi)
        labels = logits.argmax(1)
        loss = torch.nn.functional.cross_entropy(logits / odin_t, labels, reduction="sum")
        grad = torch.autograd.grad(loss, xi)[0]
    step = (torch.ge(grad, 0).float() - 0.5) * 2
    step = step / torch.tensor(std, dtype=step.dtype).view(1, -1, 1, 1)
    with torch.no_grad():
        zp = model(x - odin_eps * step).double()
    out["odin"] = -torch.softmax(zp / odin_t, 1).max(1).values
    # GradNorm: one backward per sample, gradient of the classifier weight.
    fc = classifier_of(model, arch)
    scores = []
    for i in range(x.shape[0]):
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            zi = model(x[i:i + 1])
            k = zi.shape[1]
            loss = torch.sum(-torch.ones_like(zi) / k * torch.log_softmax(zi, 1), dim=-1).mean()
            loss.backward()
        scores.append(-fc.weight.grad.abs().sum().item())
    model.zero_grad(set_to_none=True)
    out["gradnorm"] = torch.tensor(scores, dtype=torch.float64)
    return {k: v.detach().double() for k, v in out.items()}


def classifier_of(model, arch):
    if arch.startswith("resnet"):
        return model.fc
    if arch.startswith("densenet"):
        return model.classifier
    if arch.startswith("bit_"):
        return model.head.conv
    if arch.startswith("wrn_"):
        return model.fc
    return model.linear


def authors_bit_gaia_z(model, x):
    """GAIA-Z on a BiT model as the authors' code computes it with `-hook
    before_head` (hook.py get_beforehead_hooks, cal_method.py cal_zero):
    tensor hooks on the GroupNorms of body.block4 and on the pooled features
    before the head, the non-zero fraction per channel, its square, the mean
    over all their channels."""
    model.eval()
    grads = {}
    handles = []

    def hook(name):
        def f(mod, inp, out):
            out.register_hook(lambda g: grads.__setitem__(name, g.detach()))
        return f
    names = []
    for name, mod in model.body.block4.named_modules():
        if isinstance(mod, nn.GroupNorm):
            names.append(name)
            handles.append(mod.register_forward_hook(hook(name)))
    # The pooled features: the output of the pooling that feeds the 1x1 head.
    handles.append(model.head.avg.register_forward_hook(hook("before_head")))
    names.append("before_head")
    try:
        with torch.enable_grad():
            xi = x.clone().requires_grad_(True)
            y = torch.flatten(model(xi), 1)
            y.max(dim=1).values.sum().backward()
    finally:
        for h in handles:
            h.remove()
    scores = [(grads[n] != 0).double().mean(dim=(-1, -2)) for n in names]
    return torch.cat(scores, dim=1).pow(2).mean(dim=1)
