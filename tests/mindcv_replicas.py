"""PyTorch replicas of MindCV's classification backbones, for the tests.

Written from MindCV's model code (mindcv/models/mobilenetv2.py, mobilenetv3.py, resnet.py):
the same layers in the same order under the same attribute names, so that ``mindcv_state``
gives the tensor names and shapes of MindCV's checkpoints (BN as gamma/beta/moving_mean/
moving_variance), and the same arithmetic, MindSpore's pad_mode "same" included, so their
outputs are what MindCV computes. ``taps`` are the ``features`` indices (or stages) that
MindCV's features_only wrapper returns for the seed's out_indices.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
            "running_var": "moving_variance"}


def tf_same_pad(x: Tensor, kernel: int, stride: int, value: float = 0.0) -> Tensor:
    """MindSpore pad_mode "same": output ceil(n / stride), the odd pixel of padding after."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class SameConv(nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:
        x = tf_same_pad(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


class SameMaxPool(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(tf_same_pad(x, 3, 2, float("-inf")), 3, 2)


def conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, same: bool = False) -> nn.Conv2d:
    if same:
        return SameConv(cin, cout, k, stride, groups=groups, bias=False)
    return nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)


class Blocks(nn.Module):
    """A model whose forward returns the outputs of ``features[i]`` for i in ``taps``."""

    taps: tuple[int, ...]

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
        return outs


class InvertedResidualV2(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = round(cin * t)
        layers = [] if t == 1 else [conv(cin, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [conv(hidden, hidden, 3, stride, groups=hidden), nn.BatchNorm2d(hidden), nn.ReLU6(),
                   conv(hidden, cout, 1), nn.BatchNorm2d(cout)]
        self.layers = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


class MobileNetV2(Blocks):
    """mindcv mobilenet_v2_100; features_only out_indices [13, 18] -> features.15, features.22."""

    taps = (15, 22)

    def __init__(self):
        super().__init__()
        settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                    (6, 160, 3, 2), (6, 320, 1, 1)]
        layers: list[nn.Module] = [conv(3, 32, 3, 2), nn.BatchNorm2d(32), nn.ReLU6()]
        cin = 32
        for t, c, n, s in settings:
            for i in range(n):
                layers.append(InvertedResidualV2(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [conv(320, 1280, 1), nn.BatchNorm2d(1280), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))


def make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        reduced = make_divisible(channels / 4)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.conv_expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = self.conv_expand(F.relu(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * F.hardsigmoid(s)


class BottleneckV3(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, k: int, stride: int, act: str, se: bool):
        super().__init__()
        activation = nn.Hardswish if act == "hswish" else nn.ReLU
        layers = [] if cin == mid else [conv(cin, mid, 1), nn.BatchNorm2d(mid), activation()]
        layers += [conv(mid, mid, k, stride, groups=mid, same=True), nn.BatchNorm2d(mid), activation()]
        if se:
            layers.append(SqueezeExcite(mid))
        layers += [conv(mid, cout, 1), nn.BatchNorm2d(cout)]
        self.layers = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


class MobileNetV3Large(Blocks):
    """mindcv mobilenet_v3_large_100; out_indices [12, 16] -> features.14, features.20."""

    taps = (14, 20)

    def __init__(self):
        super().__init__()
        settings = [  # kernel, expansion, out, SE, activation, stride
            (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
            (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
            (3, 240, 80, False, "hswish", 2), (3, 200, 80, False, "hswish", 1),
            (3, 184, 80, False, "hswish", 1), (3, 184, 80, False, "hswish", 1),
            (3, 480, 112, True, "hswish", 1), (3, 672, 112, True, "hswish", 1),
            (5, 672, 160, True, "hswish", 2), (5, 960, 160, True, "hswish", 1),
            (5, 960, 160, True, "hswish", 1)]
        layers: list[nn.Module] = [conv(3, 16, 3, 2), nn.BatchNorm2d(16), nn.Hardswish()]
        cin = 16
        for k, e, c, se, act, s in settings:
            layers.append(BottleneckV3(cin, e, c, k, s, act, se))
            cin = c
        layers += [conv(160, 960, 1), nn.BatchNorm2d(960), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(960, 1280), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(1280, 1000))


class BottleneckResNet(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = conv(cin, width, 1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv(width, width, 3, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv(width, cout, 1), nn.BatchNorm2d(cout)
        self.down_sample = None
        if stride != 1 or cin != cout:
            self.down_sample = nn.Sequential(conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.down_sample(x) if self.down_sample is not None else x))


class ResNet50(nn.Module):
    """mindcv resnet50; out_indices [2, 3, 4] -> layer2, layer3, layer4."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = conv(3, 64, 7, 2), nn.BatchNorm2d(64)
        self.max_pool = SameMaxPool()
        cin, stages = 64, []
        for width, depth, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
            blocks = []
            for i in range(depth):
                blocks.append(BottleneckResNet(cin, width, stride if i == 0 else 1))
                cin = width * 4
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.classifier = nn.Linear(2048, 1000)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.max_pool(F.relu(self.bn1(self.conv1(x))))
        c3 = self.layer2(self.layer1(x))
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Distinct, non-trivial values everywhere (BN statistics and biases too), eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def mindcv_state(model: nn.Module, prefix: str = "") -> dict[str, Tensor]:
    """The replica's tensors under MindSpore's names, in MindSpore's order for a BN."""
    state = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            for torch_name in ("running_mean", "running_var", "weight", "bias"):
                state[f"{prefix}{name}.{BN_NAMES[torch_name]}"] = getattr(m, torch_name).detach().clone()
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            state[f"{prefix}{name}.weight"] = m.weight.detach().clone()
            if m.bias is not None:
                state[f"{prefix}{name}.bias"] = m.bias.detach().clone()
    return state
