"""Small building blocks of the neck and heads, with the seed's numerics available.

- ``conv2d(..., pad_mode="same")``: TensorFlow/MindSpore "same" padding. At stride 2 on an even
  input the extra row and column go to the bottom and right only; PyTorch's padding=1 pads
  both sides. The output sizes agree, the values don't.
- ``resize_mindspore``: MindSpore's legacy bilinear resize (align_corners=False,
  half_pixel_centers=False): source coordinate = destination x in/out.
- ``ConvBNAct``: conv + BN + activation, the seed's ConvBNReLU (or with a depthwise-separable
  conv: ``SeparableConv2d``, TensorFlow's SeparableConv2D).
- ``use_same_padding``: gives chosen layers of a timm backbone "same" padding, as MindCV pads
  them (MobileNetV3's depthwise convs, ResNet's max-pool), keeping their parameter names.
"""

from __future__ import annotations

import fnmatch
import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..resize import legacy_matrix

log = logging.getLogger(__name__)

ACTIVATIONS = {"relu6": nn.ReLU6, "hardswish": nn.Hardswish, "relu": nn.ReLU}


def same_pads(x: Tensor, kernel_size: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int]) -> list[int]:
    """F.pad amounts (left, right, top, bottom) for TensorFlow "same" padding of (N, C, H, W)
    ``x``: output size ceil(in / stride), the odd pixel of padding at the bottom/right."""
    pads = []
    for size, k, s, d in zip(x.shape[-1:-3:-1], kernel_size[::-1], stride[::-1], dilation[::-1]):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Conv2dSame(nn.Conv2d):
    """A conv with TensorFlow "same" padding, computed from the input size at run time."""

    def forward(self, x: Tensor) -> Tensor:
        left, right, top, bottom = same_pads(x, self.kernel_size, self.stride, self.dilation)
        if left == right and top == bottom:  # symmetric (odd inputs): the conv pads, no copy
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MaxPool2dSame(nn.MaxPool2d):
    """A max-pool with TensorFlow "same" padding; padded cells never win (they are -inf)."""

    def forward(self, x: Tensor) -> Tensor:
        left, right, top, bottom = same_pads(x, _pair(self.kernel_size), _pair(self.stride), _pair(self.dilation))
        if left == right and top == bottom:  # symmetric: the pool pads (with -inf), no copy
            return F.max_pool2d(x, self.kernel_size, self.stride, (top, left), self.dilation, self.ceil_mode)
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride, 0, self.dilation, self.ceil_mode)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def use_same_padding(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """Give the stride-2 convs and max-pools of ``model`` whose names match ``patterns`` (fnmatch
    globs, e.g. ``"blocks.*.*.conv_dw"``) TensorFlow "same" padding, in place.

    Stride-1 layers with odd kernels already pad the same way both ways and stay as they are,
    so the cost is one small F.pad per strided layer. Parameters are moved, not copied, so
    state-dict names and values are unchanged. Returns the names of the replaced layers. A
    pattern that matches no conv or pool is logged as a warning: a typo, or a recipe whose
    backbone was swapped for one the MindCV padding does not concern.
    """
    replaced = []
    for pattern in patterns:
        matched = [(name, m) for name, m in model.named_modules()
                   if fnmatch.fnmatchcase(name, pattern) and isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
        if not matched:
            log.warning("backbone_same_padding: %r matches no conv or max-pool of %s; nothing "
                        "changed", pattern, type(model).__name__)
        for name, module in matched:
            new = _same_padded(module)
            if new is not None:
                parent_name, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
                replaced.append(name)
    return replaced


def _same_padded(module: nn.Module) -> nn.Module | None:
    """The "same"-padding twin of a strided conv or max-pool (None if it needs none)."""
    if isinstance(module, (Conv2dSame, MaxPool2dSame)):
        return None
    if isinstance(module, nn.Conv2d):
        if max(module.stride) == 1 or module.padding_mode != "zeros":
            return None
        new = Conv2dSame(module.in_channels, module.out_channels, module.kernel_size,
                         stride=module.stride, dilation=module.dilation, groups=module.groups,
                         bias=module.bias is not None, device="meta")
        new.weight, new.bias = module.weight, module.bias
        return new
    if max(_pair(module.stride)) == 1:
        return None
    return MaxPool2dSame(module.kernel_size, module.stride, dilation=module.dilation,
                         ceil_mode=module.ceil_mode)


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


class SeparableConv2d(nn.Sequential):
    """A k x k depthwise conv (stride here, no bias) straight into a 1x1 conv, nothing between:
    TensorFlow's SeparableConv2D (and the TF OD API's "use_depthwise" layers)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, *, stride: int = 1,
                 bias: bool = False, pad_mode: str = "same"):
        super().__init__(conv2d(in_ch, in_ch, kernel_size, stride=stride, groups=in_ch, pad_mode=pad_mode),
                         nn.Conv2d(in_ch, out_ch, 1, bias=bias))


class ConvBNAct(nn.Sequential):
    """conv (no bias; ``separable``: a ``SeparableConv2d``) -> BatchNorm -> activation."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, *, stride: int = 1,
                 groups: int = 1, act: str = "relu6", eps: float = 1e-3, momentum: float = 0.03,
                 pad_mode: str = "same", separable: bool = False):
        super().__init__()
        if separable:
            self.conv = SeparableConv2d(in_ch, out_ch, kernel_size, stride=stride, pad_mode=pad_mode)
        else:
            self.conv = conv2d(in_ch, out_ch, kernel_size, stride=stride, groups=groups, pad_mode=pad_mode)
        self.bn = nn.BatchNorm2d(out_ch, eps=eps, momentum=momentum)
        self.act = ACTIVATIONS[act]()


def resize_mindspore(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of (N, C, H, W) to ``size`` as MindSpore's ResizeBilinear (v1) does.

    Separable: two small matrix products with constant weights, which export to ONNX as
    MatMul and cost little next to the convs around them.
    """
    rows = torch.from_numpy(legacy_matrix(x.shape[-2], size[0])).to(x)
    cols = torch.from_numpy(legacy_matrix(x.shape[-1], size[1])).to(x)
    return torch.matmul(torch.matmul(rows, x), cols.t())


def upsample(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Resize for the FPN's top-down path: "mindspore", "bilinear" (PyTorch) or "nearest"."""
    if mode == "mindspore":
        return resize_mindspore(x, size)
    if mode == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return F.interpolate(x, size=size, mode="nearest")


@torch.no_grad()
def trunc_normal_(weight: Tensor, *, std: float, cutoff: float = 2.0) -> Tensor:
    """N(0, std) truncated at +-cutoff std, by inverse-CDF sampling: one uniform draw per value
    (torch's rejection sampler takes most of build_model's time on large heads)."""
    edge = math.erf(cutoff / math.sqrt(2))
    return weight.uniform_(-edge, edge).erfinv_().mul_(std * math.sqrt(2))


def init_new_layers(module: nn.Module) -> None:
    """The seed's init of layers it adds to a backbone: truncated normal (std 0.02, cut at
    2 std) conv weights, zero biases, BN at identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
