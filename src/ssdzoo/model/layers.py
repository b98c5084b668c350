"""Small building blocks of the neck and heads, with the seed's numerics available.

- ``conv2d(..., pad_mode="same")``: TensorFlow/MindSpore "same" padding. At stride 2 on an even
  input the extra row and column go to the bottom and right only; PyTorch's padding=1 pads
  both sides. The output sizes agree, the values don't.
- ``resize_mindspore``: MindSpore's legacy bilinear resize (align_corners=False,
  half_pixel_centers=False): source coordinate = destination x in/out.
- ``ConvBNAct``: conv + BN + activation, the seed's ConvBNReLU.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {"relu6": nn.ReLU6, "hardswish": nn.Hardswish, "relu": nn.ReLU}


class Conv2dSame(nn.Conv2d):
    """A conv with TensorFlow "same" padding, computed from the input size at run time."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1],
                                 self.dilation[::-1]):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]  # (left, right), then (top, bottom)
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv2d(in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1, groups: int = 1,
           bias: bool = False, pad_mode: str = "same") -> nn.Conv2d:
    """A conv that keeps size / stride; "same" pads like TensorFlow, "symmetric" like PyTorch.

    The two differ only where the padding is odd (stride 2 on even inputs), so a stride-1 or
    symmetric conv is a plain ``nn.Conv2d``.
    """
    if pad_mode == "same" and stride > 1:
        return Conv2dSame(in_ch, out_ch, kernel_size, stride=stride, groups=groups, bias=bias)
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2,
                     groups=groups, bias=bias)


class ConvBNAct(nn.Sequential):
    """conv (no bias) -> BatchNorm -> activation."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, *, stride: int = 1,
                 groups: int = 1, act: str = "relu6", eps: float = 1e-3, momentum: float = 0.03,
                 pad_mode: str = "same"):
        super().__init__()
        self.conv = conv2d(in_ch, out_ch, kernel_size, stride=stride, groups=groups, pad_mode=pad_mode)
        self.bn = nn.BatchNorm2d(out_ch, eps=eps, momentum=momentum)
        self.act = ACTIVATIONS[act]()


@lru_cache(maxsize=64)
def _mindspore_resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(out, in) interpolation weights: source = destination x in / out, clamped at the edge.

    Computed and cached in numpy, outside torch: a tensor made while torch.export traces the
    model is a fake tensor, and a cached one would break every later eager call.
    """
    src = np.arange(size_out, dtype=np.float64) * (size_in / size_out)
    low = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    frac = src - low
    weights = np.zeros((size_out, size_in), dtype=np.float64)
    rows = np.arange(size_out)
    weights[rows, low] += 1 - frac
    weights[rows, high] += frac
    return weights.astype(np.float32)


def resize_mindspore(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of (N, C, H, W) to ``size`` as MindSpore's ResizeBilinear (v1) does.

    Separable: two small matrix products with constant weights, which export to ONNX as
    MatMul and cost little next to the convs around them.
    """
    rows = torch.from_numpy(_mindspore_resize_matrix(x.shape[-2], size[0])).to(x)
    cols = torch.from_numpy(_mindspore_resize_matrix(x.shape[-1], size[1])).to(x)
    return torch.matmul(torch.matmul(rows, x), cols.t())


def upsample(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Resize for the FPN's top-down path: "mindspore", "bilinear" (PyTorch) or "nearest"."""
    if mode == "mindspore":
        return resize_mindspore(x, size)
    if mode == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return F.interpolate(x, size=size, mode="nearest")


def init_new_layers(module: nn.Module) -> None:
    """The seed's init of layers it adds to a backbone: truncated normal (std 0.02, cut at
    2 std) conv weights, zero biases, BN at identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
