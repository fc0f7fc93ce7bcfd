"""Model definitions the project exports to TorchScript.

torchvision supplies ResNet-18/34/50 and DenseNet-121. The GAIA authors'
CIFAR ResNet-18/34/50 and WRN-40-2 are defined here with their state-dict
keys (gaia_resnet*, wrn_40_2). The CIFAR ResNets
(He et al. 2016, the 3-stage variant with option-A shortcuts) and the small
MNIST ResNet of the demo are defined here, scriptable as they stand, with the
parameter names of akamaster/pytorch_resnet_cifar10 so that its checkpoints
load unchanged.
"""

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


class ShortcutA(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad planes/4 channels on each side."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)


class CifarBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = ShortcutA(planes)
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


def _cifar_stage(in_planes, planes, n, stride):
    """n basic blocks, the first with the given stride."""
    layers = [CifarBasicBlock(in_planes, planes, stride)]
    layers += [CifarBasicBlock(planes, planes, 1) for _ in range(n - 1)]
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """ResNet-6n+2 for 32 x 32 inputs: widths 16, 32, 64, global pooling, linear."""

    def __init__(self, num_blocks, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = _cifar_stage(16, 16, num_blocks[0], 1)
        self.layer2 = _cifar_stage(16, 32, num_blocks[1], 2)
        self.layer3 = _cifar_stage(32, 64, num_blocks[2], 2)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.avg_pool2d(out, int(out.shape[3]))
        out = out.view(out.size(0), -1)
        return self.linear(out)


class MnistResNet(nn.Module):
    """A small ResNet for 28 x 28 grayscale digits: BatchNorm after every
    convolution (so GAIA has taps), two stages, global pooling, linear."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = _cifar_stage(16, 16, 2, 1)
        self.layer2 = _cifar_stage(16, 32, 2, 2)
        self.layer3 = _cifar_stage(32, 64, 2, 2)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1)
        out = torch.flatten(out, 1)
        return self.linear(out)


class _TVBasic(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class _TVBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TVResNet(nn.Module):
    """torchvision's ResNet, same module names and state dict, for machines
    without torchvision (the GPU check); build() prefers torchvision's own."""

    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


TV_RESNETS = {"resnet18": (_TVBasic, [2, 2, 2, 2]), "resnet34": (_TVBasic, [3, 4, 6, 3]),
              "resnet50": (_TVBottleneck, [3, 4, 6, 3])}

# --- BiT: ResNetV2 with GroupNorm and weight-standardized convolutions -----
# Kolesnikov et al., "Big Transfer (BiT)", 2020: pre-activation bottlenecks,
# GroupNorm(32), convolutions whose weights are standardized per output
# channel at every call. Module names follow the official PyTorch port
# (root.conv, body.blockK.unitNN.{gn1,conv1,gn2,conv2,gn3,conv3,downsample},
# head.{gn,conv}), and the head is its 1x1 convolution, so that a TorchScript
# file of the official model and one of this export look alike to gaia.

class StdConv2d(nn.Conv2d):
    """Conv2d whose weight is standardized (zero mean, unit variance per output
    channel, biased variance) before use; eps 1e-10 as BiT's release, 1e-8 as timm's."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0, bias=False, eps: float = 1e-10):
        super().__init__(cin, cout, kernel_size, stride=stride, padding=padding, bias=bias)
        self.eps = eps

    def forward(self, x):
        w = self.weight
        v, m = torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
        w = (w - m) / torch.sqrt(v + self.eps)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class PreActBottleneck(nn.Module):
    """GN-ReLU-conv1x1, GN-ReLU-conv3x3 (stride), GN-ReLU-conv1x1, plus the
    shortcut (a projection of the first pre-activation where shapes change)."""

    def __init__(self, cin, cout, cmid, stride=1, eps: float = 1e-10):
        super().__init__()
        self.gn1 = nn.GroupNorm(32, cin)
        self.conv1 = StdConv2d(cin, cmid, 1, eps=eps)
        self.gn2 = nn.GroupNorm(32, cmid)
        self.conv2 = StdConv2d(cmid, cmid, 3, stride=stride, padding=1, eps=eps)
        self.gn3 = nn.GroupNorm(32, cmid)
        self.conv3 = StdConv2d(cmid, cout, 1, eps=eps)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = StdConv2d(cin, cout, 1, stride=stride, eps=eps) \
            if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        out = self.relu(self.gn1(x))
        residual = x
        if not isinstance(self.downsample, nn.Identity):
            residual = self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.gn2(out)))
        out = self.conv3(self.relu(self.gn3(out)))
        return out + residual


class ResNetV2(nn.Module):
    def __init__(self, block_units, width_factor: int = 1, num_classes: int = 1000, eps: float = 1e-10):
        super().__init__()
        wf = width_factor
        self.root = nn.Sequential(OrderedDict([
            ("conv", StdConv2d(3, 64 * wf, 7, stride=2, padding=3, eps=eps)),
            ("pad", nn.ConstantPad2d(1, 0.0)),
            ("pool", nn.MaxPool2d(kernel_size=3, stride=2, padding=0)),
        ]))
        blocks = []
        cin = 64 * wf
        for k, (units, stride) in enumerate(zip(block_units, (1, 2, 2, 2))):
            cout, cmid = 256 * wf * 2 ** k, 64 * wf * 2 ** k
            seq = [("unit01", PreActBottleneck(cin, cout, cmid, stride, eps))]
            seq += [(f"unit{i:02d}", PreActBottleneck(cout, cout, cmid, 1, eps)) for i in range(2, units + 1)]
            blocks.append((f"block{k + 1}", nn.Sequential(OrderedDict(seq))))
            cin = cout
        self.body = nn.Sequential(OrderedDict(blocks))
        self.head = nn.Sequential(OrderedDict([
            ("gn", nn.GroupNorm(32, cin)),
            ("relu", nn.ReLU(inplace=True)),
            ("avg", nn.AdaptiveAvgPool2d(output_size=1)),
            ("conv", nn.Conv2d(cin, num_classes, kernel_size=1, bias=True)),
        ]))

    def forward(self, x):
        x = self.head(self.body(self.root(x)))
        return torch.flatten(x, 1)


BIT_ARCHS = {"bit_s_r50x1": ([3, 4, 6, 3], 1), "bit_s_r101x1": ([3, 4, 23, 3], 1)}
# BiT's preprocessing in the GAIA authors' ImageNet code: 480 x 480, mean = std = 0.5.
BIT_INPUT = [3, 480, 480]
BIT_MEAN = [0.5, 0.5, 0.5]
BIT_STD = [0.5, 0.5, 0.5]


def _tf2th(a):
    """A TensorFlow array (HWIO kernels) as a torch tensor (OIHW)."""
    import numpy as np
    a = np.asarray(a)
    if a.ndim == 4:
        a = a.transpose([3, 2, 0, 1])
    return torch.from_numpy(np.ascontiguousarray(a))


def _fit(key, t, model):
    """t reshaped to the model's parameter key (a 1x1 conv head from a 2-D
    kernel), or a SystemExit naming both shapes."""
    want = model.state_dict()[key].shape
    if t.shape == want:
        return t
    if t.numel() == want.numel() and t.squeeze().shape == torch.Size([d for d in want if d != 1]):
        return t.reshape(want)
    raise SystemExit(f"{key}: the checkpoint's tensor has shape {list(t.shape)}, the model wants {list(want)}"
                     f" (another depth, width or number of classes? --num-classes sets the classes)")


def _check_all_used(src_keys, used, what):
    extra = sorted(set(src_keys) - used)
    if extra:
        raise SystemExit(f"{what}: {len(extra)} entries the model has no place for, such as {extra[:3]}"
                         f" (another depth?)")


def bit_state_dict_from_npz(weights, model, prefix="resnet/"):
    """Map the official BiT release (.npz: resnet/root_block/standardized_conv2d/kernel,
    resnet/blockK/unitNN/{a,b,c}/{standardized_conv2d/kernel,group_norm/gamma,beta},
    resnet/blockK/unit01/a/proj/standardized_conv2d/kernel, resnet/group_norm/*,
    resnet/head/conv2d/{kernel,bias}) onto this model's state dict. A missing
    array raises KeyError naming it."""
    src = {"root.conv.weight": prefix + "root_block/standardized_conv2d/kernel",
           "head.gn.weight": prefix + "group_norm/gamma",
           "head.gn.bias": prefix + "group_norm/beta",
           "head.conv.weight": prefix + "head/conv2d/kernel",
           "head.conv.bias": prefix + "head/conv2d/bias"}
    for bname, block in model.body.named_children():
        for uname, unit in block.named_children():
            p = f"{prefix}{bname}/{uname}/"
            dst = f"body.{bname}.{uname}."
            for i, part in enumerate("abc", start=1):
                src[f"{dst}conv{i}.weight"] = f"{p}{part}/standardized_conv2d/kernel"
                src[f"{dst}gn{i}.weight"] = f"{p}{part}/group_norm/gamma"
                src[f"{dst}gn{i}.bias"] = f"{p}{part}/group_norm/beta"
            if not isinstance(unit.downsample, nn.Identity):
                src[f"{dst}downsample.weight"] = f"{p}a/proj/standardized_conv2d/kernel"
    out = {k: _fit(k, _tf2th(weights[v]).float(), model) for k, v in src.items()}
    _check_all_used([k for k in weights if k.startswith(prefix)], set(src.values()), "BiT .npz")
    return out


def bit_state_dict_from_timm(sd, model):
    """Map a timm resnetv2 state dict (stem.conv, stages.S.blocks.B.{norm1,conv1,
    norm2,conv2,norm3,conv3,downsample.conv}, norm, head.fc) onto this model's.
    A missing key raises KeyError naming it."""
    src = {"root.conv.weight": "stem.conv.weight", "head.gn.weight": "norm.weight",
           "head.gn.bias": "norm.bias", "head.conv.weight": "head.fc.weight", "head.conv.bias": "head.fc.bias"}
    for s, (bname, block) in enumerate(model.body.named_children()):
        for b, (uname, unit) in enumerate(block.named_children()):
            p, dst = f"stages.{s}.blocks.{b}.", f"body.{bname}.{uname}."
            for i in (1, 2, 3):
                src[f"{dst}conv{i}.weight"] = f"{p}conv{i}.weight"
                src[f"{dst}gn{i}.weight"] = f"{p}norm{i}.weight"
                src[f"{dst}gn{i}.bias"] = f"{p}norm{i}.bias"
            if not isinstance(unit.downsample, nn.Identity):
                src[f"{dst}downsample.weight"] = f"{p}downsample.conv.weight"
    out = {k: _fit(k, sd[v].float(), model) for k, v in src.items()}
    _check_all_used(sd.keys(), set(src.values()), "timm state dict")
    return out


# --- The GAIA authors' CIFAR models (JGEthanChen/GAIA-OOD) ------------------
# networks/resnet.py: a 3x3 stem without max-pooling, four stages of 64..512
# planes, option-B shortcuts (a 1x1 convolution and a BatchNorm, named
# shortcut.0 and shortcut.1), average pooling over the 4 x 4 map of a
# 32 x 32 input, `linear`. networks/wresnet.py: Zagoruyko's WRN-40-2 with
# pre-activation blocks (in-place ReLUs after bn1 and bn2), convShortcut
# where the width changes, a final bn1 + ReLU, adaptive pooling, `fc`. The
# forwards below compute what theirs compute, in the same order (their
# BasicBlock's in-place `out += shortcut`, their WRN's in-place ReLUs), and
# the state dicts have their keys, so their checkpoints load unchanged.

CIFAR10_MEAN, CIFAR10_STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]
CIFAR100_MEAN, CIFAR100_STD = [0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761]
CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm"]


class GaiaBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class GaiaBottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != 4 * planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, 4 * planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(4 * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += self.shortcut(x)
        return F.relu(out)


class GaiaResNet(nn.Module):
    """The authors' CIFAR ResNet-18/34/50 (networks/resnet.py)."""

    def __init__(self, block, num_blocks, num_classes: int = 10):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], 2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, n, stride):
        layers = []
        for st in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, st))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        return self.linear(out)


class WrnBlock(nn.Module):
    """networks/wresnet.py's BasicBlock (dropout 0, as the authors evaluate)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equalInOut = in_planes == out_planes
        self.convShortcut = None if self.equalInOut else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        if self.convShortcut is not None:  # not equalInOut
            x = self.relu1(self.bn1(x))
            out = self.relu2(self.bn2(self.conv1(x)))
            return torch.add(self.convShortcut(x), self.conv2(out))
        out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out)))
        return torch.add(x, self.conv2(out))


class WrnNetworkBlock(nn.Module):
    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(*[WrnBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    """The authors' WRN-depth-widen (networks/wresnet.py)."""

    def __init__(self, depth: int, widen: int, num_classes: int = 10):
        super().__init__()
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = WrnNetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = WrnNetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = WrnNetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.nChannels = ch[3]
        self.AdaptAvgPool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        out = self.AdaptAvgPool(out)
        return self.fc(out.view(-1, self.nChannels))


GAIA_RESNETS = {"gaia_resnet18": (GaiaBasicBlock, [2, 2, 2, 2]), "gaia_resnet34": (GaiaBasicBlock, [3, 4, 6, 3]),
                "gaia_resnet50": (GaiaBottleneck, [3, 4, 6, 3])}
WRN_ARCHS = {"wrn_40_2": (40, 2)}
AUTHORS_CIFAR = tuple(GAIA_RESNETS) + tuple(WRN_ARCHS)


def authors_cifar_norm(num_classes: int):
    """The authors' normalization (data/datasets.py): CIFAR-100's for 100
    classes, CIFAR-10's otherwise."""
    if num_classes == 100:
        return list(CIFAR100_MEAN), list(CIFAR100_STD)
    return list(CIFAR10_MEAN), list(CIFAR10_STD)


CIFAR_DEPTHS = {"cifar_resnet20": 3, "cifar_resnet32": 5, "cifar_resnet44": 7, "cifar_resnet56": 9}
TORCHVISION = ("resnet18", "resnet34", "resnet50", "densenet121")
ARCHS = TORCHVISION + tuple(CIFAR_DEPTHS) + AUTHORS_CIFAR + ("mnist_resnet",) + tuple(BIT_ARCHS)


def build(arch: str, num_classes: int):
    """The eager model and its preprocessing: (model, [C, H, W], mean, std)."""
    if arch in CIFAR_DEPTHS:
        n = CIFAR_DEPTHS[arch]
        return CifarResNet([n, n, n], num_classes), [3, 32, 32], IMAGENET_MEAN, IMAGENET_STD
    if arch == "mnist_resnet":
        return MnistResNet(num_classes), [1, 28, 28], [0.1307], [0.3081]
    if arch in GAIA_RESNETS:
        block, blocks = GAIA_RESNETS[arch]
        return (GaiaResNet(block, blocks, num_classes), [3, 32, 32]) + tuple(authors_cifar_norm(num_classes))
    if arch in WRN_ARCHS:
        depth, widen = WRN_ARCHS[arch]
        return (WideResNet(depth, widen, num_classes), [3, 32, 32]) + tuple(authors_cifar_norm(num_classes))
    if arch in BIT_ARCHS:
        units, wf = BIT_ARCHS[arch]
        return ResNetV2(units, wf, num_classes), list(BIT_INPUT), list(BIT_MEAN), list(BIT_STD)
    if arch in TORCHVISION:
        try:
            import torchvision
        except ImportError:
            if arch not in TV_RESNETS:
                raise SystemExit(f"{arch} needs torchvision, which this Python lacks")
            block, layers = TV_RESNETS[arch]
            return TVResNet(block, layers, num_classes), [3, 224, 224], IMAGENET_MEAN, IMAGENET_STD
        ctor = getattr(torchvision.models, arch)
        return ctor(num_classes=num_classes), [3, 224, 224], IMAGENET_MEAN, IMAGENET_STD
    raise SystemExit(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")


def features_and_head(model, arch: str):
    """Split an eager model into F = features(x), the final feature map after
    its activation, and head(F) -> (h, logits), h the pooled classifier input.
    Written from the architectures, not from any graph: the reference for taps."""
    if arch.startswith("resnet"):
        def features(x):
            m = model
            x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
            return m.layer4(m.layer3(m.layer2(m.layer1(x))))

        def head(f):
            h = torch.flatten(model.avgpool(f), 1)
            return h, model.fc(h)
        return features, head
    if arch.startswith("densenet"):
        def features(x):
            return F.relu(model.features(x))

        def head(f):
            h = torch.flatten(F.adaptive_avg_pool2d(f, (1, 1)), 1)
            return h, model.classifier(h)
        return features, head
    if arch in CIFAR_DEPTHS or arch == "mnist_resnet":
        def features(x):
            m = model
            out = F.relu(m.bn1(m.conv1(x)))
            return m.layer3(m.layer2(m.layer1(out)))

        def head(f):
            h = torch.flatten(F.adaptive_avg_pool2d(f, 1), 1)
            return h, model.linear(h)
        return features, head
    if arch in GAIA_RESNETS:
        def features(x):
            m = model
            return m.layer4(m.layer3(m.layer2(m.layer1(F.relu(m.bn1(m.conv1(x)))))))

        def head(f):
            h = F.avg_pool2d(f, 4).flatten(1)
            return h, model.linear(h)
        return features, head
    if arch in WRN_ARCHS:
        def features(x):
            m = model
            return F.relu(m.bn1(m.block3(m.block2(m.block1(m.conv1(x))))))

        def head(f):
            h = F.adaptive_avg_pool2d(f, 1).flatten(1)
            return h, model.fc(h)
        return features, head
    if arch in BIT_ARCHS:
        def features(x):
            m = model
            return F.relu(m.head.gn(m.body(m.root(x))))

        def head(f):
            h = model.head.avg(f)
            return torch.flatten(h, 1), torch.flatten(model.head.conv(h), 1)
        return features, head
    raise ValueError(arch)


def randomize_norm_stats(model, seed: int):
    """Give every BatchNorm non-trivial running statistics and affine values, so
    that a randomly initialized model in eval mode is not near the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            elif isinstance(m, nn.GroupNorm):
                c = m.num_channels
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
