"""Heads: the feature pyramid -> per-anchor box offsets and class logits.

- ``SSDHead`` (MobileNet recipes): per level, separate loc and cls branches, each a depthwise
  3x3 conv + BN + ReLU6 + 1x1 conv (the seed's MultiBox), or one plain conv (TF's
  convolutional box predictor, ``separable=False``).
- ``SharedHead`` (ResNet50-FPN recipe): conv towers whose conv weights are shared by all levels
  while each level keeps its own BN, then one shared 3x3 conv each for loc and cls (the seed's
  WeightSharedMultiBox). TF's FPNLite variant makes the convs depthwise-separable and lets loc
  and cls share one tower.

Both return (loc (N, A, 4), logits (N, A, num_classes)), anchors ordered level, row, column, box.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .layers import ConvBNAct, SeparableConv2d


def flatten_level(x: Tensor, values_per_box: int) -> Tensor:
    """(N, B*K, H, W) -> (N, H*W*B, K): anchors in row, column, box order."""
    n = x.shape[0]
    return x.permute(0, 2, 3, 1).reshape(n, -1, values_per_box)


def set_prior_probability(cls_convs: list[nn.Conv2d], num_classes: int, prior: float) -> None:
    """Start every anchor at probability ``prior`` for each class and 1 - prior for background
    (RetinaNet's initialization, Lin et al. 2017, section 4.1, with the seed's background column),
    instead of 0.5 everywhere: the first steps then don't spend themselves on the flood of easy
    negatives."""
    logit = math.log(prior / (1 - prior))
    for conv in cls_convs:
        bias = conv.bias.detach().view(-1, num_classes)  # (boxes, classes), as the head lays them out
        bias[:, 0] = -logit
        bias[:, 1:] = logit


class SSDHead(nn.Module):
    def __init__(self, in_channels: list[int], num_default: tuple[int, ...], num_classes: int, *,
                 eps: float, momentum: float, separable: bool = True, kernel_size: int = 1):
        super().__init__()

        def branch(ch: int, out: int) -> nn.Sequential:
            if not separable:  # one kernel_size conv with bias
                return nn.Sequential(nn.Conv2d(ch, out, kernel_size, padding=kernel_size // 2))
            return nn.Sequential(ConvBNAct(ch, ch, 3, groups=ch, eps=eps, momentum=momentum),
                                 nn.Conv2d(ch, out, 1))

        self.loc = nn.ModuleList(branch(c, b * 4) for c, b in zip(in_channels, num_default))
        self.cls = nn.ModuleList(branch(c, b * num_classes) for c, b in zip(in_channels, num_default))
        self.num_classes = num_classes

    def cls_convs(self) -> list[nn.Conv2d]:
        """The convs whose outputs are class logits."""
        return [branch[-1] for branch in self.cls]

    def forward(self, maps: list[Tensor]) -> tuple[Tensor, Tensor]:
        loc = [flatten_level(head(x), 4) for head, x in zip(self.loc, maps)]
        cls = [flatten_level(head(x), self.num_classes) for head, x in zip(self.cls, maps)]
        return torch.cat(loc, dim=1), torch.cat(cls, dim=1)


def shared_conv(in_ch: int, out_ch: int, *, separable: bool) -> nn.Module:
    """A 3x3 conv with bias, or a separable one (3x3 depthwise, 1x1 with bias)."""
    if separable:
        return SeparableConv2d(in_ch, out_ch, 3, bias=True)
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


class SharedTower(nn.Module):
    """``depth`` x (shared 3x3 conv with bias -> per-level BN -> ReLU6)."""

    def __init__(self, channels: int, depth: int, num_levels: int, *, eps: float, momentum: float,
                 separable: bool = False):
        super().__init__()
        self.convs = nn.ModuleList(shared_conv(channels, channels, separable=separable) for _ in range(depth))
        self.norms = nn.ModuleList(
            nn.ModuleList(nn.BatchNorm2d(channels, eps=eps, momentum=momentum) for _ in range(depth))
            for _ in range(num_levels))
        self.act = nn.ReLU6()

    def forward(self, x: Tensor, level: int) -> Tensor:
        for conv, norm in zip(self.convs, self.norms[level]):
            x = self.act(norm(conv(x)))
        return x


class SharedHead(nn.Module):
    """Weight-shared towers and predictors; ``share_tower``: one tower feeds both (TF's
    share_prediction_tower), ``separable``: depthwise-separable convs (TF's use_depthwise)."""

    def __init__(self, channels: int, num_levels: int, num_default: int, num_classes: int, *,
                 depth: int, eps: float, momentum: float, separable: bool = False,
                 share_tower: bool = False):
        super().__init__()
        tower = dict(eps=eps, momentum=momentum, separable=separable)
        self.loc_tower = SharedTower(channels, depth, num_levels, **tower)
        self.cls_tower = None if share_tower else SharedTower(channels, depth, num_levels, **tower)
        self.loc = shared_conv(channels, num_default * 4, separable=separable)
        self.cls = shared_conv(channels, num_default * num_classes, separable=separable)
        self.num_classes = num_classes

    def cls_convs(self) -> list[nn.Conv2d]:
        return [self.cls[-1] if isinstance(self.cls, nn.Sequential) else self.cls]

    def forward(self, maps: list[Tensor]) -> tuple[Tensor, Tensor]:
        loc, cls = [], []
        for i, x in enumerate(maps):
            loc_features = self.loc_tower(x, i)
            cls_features = loc_features if self.cls_tower is None else self.cls_tower(x, i)
            loc.append(flatten_level(self.loc(loc_features), 4))
            cls.append(flatten_level(self.cls(cls_features), self.num_classes))
        return torch.cat(loc, dim=1), torch.cat(cls, dim=1)
