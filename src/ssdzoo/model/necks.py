"""Necks: backbone feature maps -> the detector's feature pyramid.

- ``SSDExtras`` (MobileNet recipes): the stride-16 map expanded by a 1x1 conv, the stride-32
  map as is, then inverted-residual blocks at stride 2 for the smaller levels (or TF
  ssd_mobilenet_v2's 1x1 + full 3x3 pairs, ``ConvPair``).
- ``VGGExtras`` (SSD300): the paper's layers on VGG-16's conv4_3 and conv5_3: L2 normalization,
  pool5 / fc6 / fc7 as convs, then pairs of 1x1 and 3x3 convs with ReLU.
- ``FPN`` (ResNet50 recipe): lateral 1x1 convs, top-down resize-and-add, a 3x3 conv per level,
  then stride-2 convs for the extra bottom-up levels. TensorFlow's variant leaves the coarsest
  level unsmoothed and, in FPNLite, makes the 3x3 convs depthwise-separable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class ConvPair(nn.Module):
    """TF ssd_mobilenet_v2's extra layer: 1x1 conv to out/2, then a 3x3 conv (stride) to out,
    each with BN and ReLU6 (TF's layer_19_1_Conv2d_k_1x1 and layer_19_2_Conv2d_k_3x3_s2)."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int, eps: float, momentum: float,
                 pad_mode: str):
        super().__init__()
        norm = dict(eps=eps, momentum=momentum)
        self.conv = nn.Sequential(ConvBNAct(in_ch, out_ch // 2, 1, **norm),
                                  ConvBNAct(out_ch // 2, out_ch, 3, stride=stride, pad_mode=pad_mode, **norm))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class SSDExtras(nn.Module):
    """Two backbone maps (stride 16, stride 32) -> len(out_channels) maps. ``block``:
    "inverted_residual" (the seed's) or "conv" (``ConvPair``). ``expand=False``: the stride-16
    map is the first level as it comes (torchvision's SSDLite, whose backbone gives the
    expansion itself)."""

    def __init__(self, backbone_channels: list[int], *, in_channels: tuple[int, ...],
                 out_channels: tuple[int, ...], strides: tuple[int, ...], ratios: tuple[float, ...],
                 expand_act: str, expand_eps: float, expand_momentum: float,
                 eps: float, momentum: float, pad_mode: str, block: str = "inverted_residual",
                 expand: bool = True):
        super().__init__()
        if len(backbone_channels) != 2:
            raise ValueError(f"the SSD extras neck takes 2 backbone levels, got {len(backbone_channels)}")
        if not expand and backbone_channels[0] != out_channels[0]:
            raise ValueError(f"extras_expand is false, so extras_out_channels[0] must be the backbone's first "
                             f"level's {backbone_channels[0]} channels, got {out_channels[0]}")
        if backbone_channels[1] != out_channels[1]:
            raise ValueError(f"extras_out_channels[1] is {out_channels[1]} but the backbone's last "
                             f"level has {backbone_channels[1]} channels")
        for i in range(1, len(out_channels)):
            if in_channels[i] != out_channels[i - 1]:
                raise ValueError(f"extras_in_channels[{i}] is {in_channels[i]} but level {i - 1} "
                                 f"has {out_channels[i - 1]} channels (extras_out_channels[{i - 1}])")
        self.expand = ConvBNAct(backbone_channels[0], out_channels[0], 1, act=expand_act,
                                eps=expand_eps, momentum=expand_momentum) if expand else nn.Identity()
        if block == "conv":
            self.blocks = nn.ModuleList(
                ConvPair(in_channels[i], out_channels[i], stride=strides[i], eps=eps, momentum=momentum,
                         pad_mode=pad_mode)
                for i in range(2, len(out_channels)))
        else:
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
    levels on top of the coarsest one (the seed's BottomUp).

    ``smooth_top=False``: the coarsest backbone level is its lateral projection, unsmoothed (TF's
    FPN); ``separable``: smoothing and extra convs are depthwise-separable (TF's FPNLite);
    ``smoothed_top_down``: each level's smoothed output, not the sum before smoothing, goes on
    down the top-down path (TF2's Keras FPN)."""

    def __init__(self, backbone_channels: list[int], *, channels: int, extra_levels: int,
                 upsample_mode: str, eps: float, momentum: float, pad_mode: str,
                 smooth_top: bool = True, separable: bool = False, smoothed_top_down: bool = False):
        super().__init__()
        norm = dict(eps=eps, momentum=momentum, separable=separable)
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in backbone_channels)
        smoothed = len(backbone_channels) if smooth_top else len(backbone_channels) - 1
        self.smooth = nn.ModuleList(ConvBNAct(channels, channels, 3, **norm) for _ in range(smoothed))
        self.extra = nn.ModuleList(ConvBNAct(channels, channels, 3, stride=2, pad_mode=pad_mode, **norm)
                                   for _ in range(extra_levels))
        self.upsample_mode = upsample_mode
        self.smoothed_top_down = smoothed_top_down
        self.out_channels = [channels] * (len(backbone_channels) + extra_levels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        if self.smoothed_top_down:
            maps = [laterals[-1] if len(self.smooth) < len(laterals) else self.smooth[-1](laterals[-1])]
            for i in reversed(range(len(laterals) - 1)):  # top-down: coarse to fine
                maps.insert(0, self.smooth[i](upsample(maps[0], laterals[i].shape[-2:], self.upsample_mode)
                                              + laterals[i]))
        else:
            merged = [laterals[-1]]
            for lateral in reversed(laterals[:-1]):  # top-down: coarse to fine
                merged.insert(0, upsample(merged[0], lateral.shape[-2:], self.upsample_mode) + lateral)
            maps = [conv(m) for conv, m in zip(self.smooth, merged)] + merged[len(self.smooth):]
        for conv in self.extra:
            maps.append(conv(maps[-1]))
        return maps


class L2Norm(nn.Module):
    """x / ||x||_2 over the channels at each place, times a learned per-channel scale (ParseNet,
    Liu, Rabinovich and Berg 2015): SSD300 puts it on conv4_3, whose activations are much larger
    than the later layers', with the scale starting at 20 (SSD paper, section 3.1)."""

    def __init__(self, channels: int, scale: float = 20.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight.view(1, -1, 1, 1) * F.normalize(x, dim=1)


class VGGExtras(nn.Module):
    """The SSD300 neck on VGG-16's conv4_3 (stride 8) and conv5_3 (stride 16) maps.

    Level 0: conv4_3, L2-normalized. Level 1: pool5 as a 3x3 stride-1 max-pool, then fc6 as a
    3x3 conv dilated 6 and fc7 as a 1x1 conv, each with ReLU (VGG's fully connected layers
    made convolutional, SSD paper, section 3). Later levels: a 1x1 conv to out / 2, then a 3x3
    conv to out, each with bias and ReLU; padded by 1 at stride 2, unpadded at stride 1
    (conv8_2 .. conv11_2: 19 -> 10 -> 5 -> 3 -> 1 at 300x300). No BatchNorm, as in the paper.
    """

    def __init__(self, backbone_channels: list[int], *, in_channels: tuple[int, ...],
                 out_channels: tuple[int, ...], strides: tuple[int, ...]):
        super().__init__()
        if len(backbone_channels) != 2:
            raise ValueError(f"the VGG SSD neck takes 2 backbone levels (conv4_3, conv5_3), got {len(backbone_channels)}")
        if backbone_channels[0] != out_channels[0]:
            raise ValueError(f"extras_out_channels[0] is {out_channels[0]} but conv4_3 has {backbone_channels[0]} "
                             "channels (L2 normalization keeps them)")
        for i in range(2, len(out_channels)):
            if in_channels[i] != out_channels[i - 1]:
                raise ValueError(f"extras_in_channels[{i}] is {in_channels[i]} but level {i - 1} "
                                 f"has {out_channels[i - 1]} channels (extras_out_channels[{i - 1}])")
        self.l2norm = L2Norm(backbone_channels[0])
        fc = out_channels[1]
        self.fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5
            nn.Conv2d(backbone_channels[1], fc, kernel_size=3, padding=6, dilation=6), nn.ReLU(),  # fc6
            nn.Conv2d(fc, fc, kernel_size=1), nn.ReLU())  # fc7
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[i], out_channels[i] // 2, kernel_size=1), nn.ReLU(),
                          nn.Conv2d(out_channels[i] // 2, out_channels[i], kernel_size=3, stride=strides[i],
                                    padding=1 if strides[i] > 1 else 0), nn.ReLU())
            for i in range(2, len(out_channels)))
        self.out_channels = list(out_channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        conv4_3, conv5_3 = features
        x = self.fc(conv5_3)
        maps = [self.l2norm(conv4_3), x]
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps
