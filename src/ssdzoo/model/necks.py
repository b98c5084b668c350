"""Necks: backbone feature maps -> the detector's feature pyramid.

- ``SSDExtras`` (MobileNet recipes): the stride-16 map expanded by a 1x1 conv, the stride-32
  map as is, then inverted-residual blocks at stride 2 for the smaller levels.
- ``FPN`` (ResNet50 recipe): lateral 1x1 convs, top-down resize-and-add, a 3x3 conv per level,
  then stride-2 convs for the extra bottom-up levels.
"""

from __future__ import annotations

from torch import Tensor, nn

from .layers import ConvBNAct, upsample


class InvertedResidual(nn.Module):
    """MobileNetV2's block (Sandler et al. 2018) as the seed uses it for extra layers:
    1x1 expand -> 3x3 depthwise (stride) -> 1x1 project + BN, residual when shapes allow,
    then ReLU6 after the block."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int, expand_ratio: float,
                 eps: float, momentum: float, pad_mode: str):
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        norm = dict(eps=eps, momentum=momentum)
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_ch, hidden, 1, **norm))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride=stride, groups=hidden, pad_mode=pad_mode, **norm),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch, **norm),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch
        self.act = nn.ReLU6()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return self.act(x + y if self.use_residual else y)


class SSDExtras(nn.Module):
    """Two backbone maps (stride 16, stride 32) -> len(out_channels) maps."""

    def __init__(self, backbone_channels: list[int], *, in_channels: tuple[int, ...],
                 out_channels: tuple[int, ...], strides: tuple[int, ...], ratios: tuple[float, ...],
                 expand_act: str, expand_eps: float, expand_momentum: float,
                 eps: float, momentum: float, pad_mode: str):
        super().__init__()
        if len(backbone_channels) != 2:
            raise ValueError(f"the SSD extras neck takes 2 backbone levels, got {len(backbone_channels)}")
        if backbone_channels[1] != out_channels[1]:
            raise ValueError(f"extras_out_channels[1] is {out_channels[1]} but the backbone's last "
                             f"level has {backbone_channels[1]} channels")
        for i in range(1, len(out_channels)):
            if in_channels[i] != out_channels[i - 1]:
                raise ValueError(f"extras_in_channels[{i}] is {in_channels[i]} but level {i - 1} "
                                 f"has {out_channels[i - 1]} channels (extras_out_channels[{i - 1}])")
        self.expand = ConvBNAct(backbone_channels[0], out_channels[0], 1, act=expand_act,
                                eps=expand_eps, momentum=expand_momentum)
        self.blocks = nn.ModuleList(
            InvertedResidual(in_channels[i], out_channels[i], stride=strides[i], expand_ratio=ratios[i],
                             eps=eps, momentum=momentum, pad_mode=pad_mode)
            for i in range(2, len(out_channels)))
        self.out_channels = list(out_channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        stride16, x = features
        maps = [self.expand(stride16), x]
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps


class FPN(nn.Module):
    """Feature pyramid (Lin et al. 2017) on the backbone levels, plus ``extra_levels`` stride-2
    levels on top of the coarsest one (the seed's BottomUp)."""

    def __init__(self, backbone_channels: list[int], *, channels: int, extra_levels: int,
                 upsample_mode: str, eps: float, momentum: float, pad_mode: str):
        super().__init__()
        norm = dict(eps=eps, momentum=momentum)
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in backbone_channels)
        self.smooth = nn.ModuleList(ConvBNAct(channels, channels, 3, **norm) for _ in backbone_channels)
        self.extra = nn.ModuleList(ConvBNAct(channels, channels, 3, stride=2, pad_mode=pad_mode, **norm)
                                   for _ in range(extra_levels))
        self.upsample_mode = upsample_mode
        self.out_channels = [channels] * (len(backbone_channels) + extra_levels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):  # top-down: coarse to fine
            merged.insert(0, upsample(merged[0], lateral.shape[-2:], self.upsample_mode) + lateral)
        maps = [conv(m) for conv, m in zip(self.smooth, merged)]
        for conv in self.extra:
            maps.append(conv(maps[-1]))
        return maps
