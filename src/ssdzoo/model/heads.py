"""Heads: the feature pyramid -> per-anchor box offsets and class logits.

- ``SSDHead`` (MobileNet recipes): per level, separate loc and cls branches, each a depthwise
  3x3 conv + BN + ReLU6 + 1x1 conv (the seed's MultiBox).
- ``SharedHead`` (ResNet50-FPN recipe): conv towers whose conv weights are shared by all levels
  while each level keeps its own BN, then one shared 3x3 conv each for loc and cls (the seed's
  WeightSharedMultiBox).

Both return (loc (N, A, 4), logits (N, A, num_classes)), anchors ordered level, row, column, box.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .layers import ConvBNAct


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
                 eps: float, momentum: float):
        super().__init__()

        def branch(ch: int, out: int) -> nn.Sequential:
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


class SharedTower(nn.Module):
    """``depth`` x (shared 3x3 conv with bias -> per-level BN -> ReLU6)."""

    def __init__(self, channels: int, depth: int, num_levels: int, *, eps: float, momentum: float):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(depth))
        self.norms = nn.ModuleList(
            nn.ModuleList(nn.BatchNorm2d(channels, eps=eps, momentum=momentum) for _ in range(depth))
            for _ in range(num_levels))
        self.act = nn.ReLU6()

    def forward(self, x: Tensor, level: int) -> Tensor:
        for conv, norm in zip(self.convs, self.norms[level]):
            x = self.act(norm(conv(x)))
        return x


class SharedHead(nn.Module):
    def __init__(self, channels: int, num_levels: int, num_default: int, num_classes: int, *,
                 depth: int, eps: float, momentum: float):
        super().__init__()
        self.loc_tower = SharedTower(channels, depth, num_levels, eps=eps, momentum=momentum)
        self.cls_tower = SharedTower(channels, depth, num_levels, eps=eps, momentum=momentum)
        self.loc = nn.Conv2d(channels, num_default * 4, 3, padding=1)
        self.cls = nn.Conv2d(channels, num_default * num_classes, 3, padding=1)
        self.num_classes = num_classes

    def cls_convs(self) -> list[nn.Conv2d]:
        return [self.cls]

    def forward(self, maps: list[Tensor]) -> tuple[Tensor, Tensor]:
        loc = [flatten_level(self.loc(self.loc_tower(x, i)), 4) for i, x in enumerate(maps)]
        cls = [flatten_level(self.cls(self.cls_tower(x, i)), self.num_classes) for i, x in enumerate(maps)]
        return torch.cat(loc, dim=1), torch.cat(cls, dim=1)
