"""torchvision's SSD state-dict names -> ssdzoo's, for its two detection models.

- ``ssd300_vgg16``: ``backbone.features.*`` (VGG-16 to conv4_3), ``backbone.scale_weight`` (the
  L2Norm scale), ``backbone.extra.0`` (pool4, conv5_1..conv5_3, then pool5/fc6/fc7 in ``.7``),
  ``backbone.extra.1-4`` (conv8..conv11), one 3x3 conv per level in the heads.
- ``ssdlite320_mobilenet_v3_large``: ``backbone.features.0`` (MobileNetV3's layers up to the C4
  block's expansion) and ``backbone.features.1`` (the rest of that block, the later blocks and
  the last conv), ``backbone.extra.0-3``, and heads of a 3x3 depthwise conv + BN and a 1x1 conv.

The maps are written from the ssdzoo model's own layout (which timm blocks have an expansion or
squeeze-excitation), so a name that fits nowhere is reported, not guessed.
"""

from __future__ import annotations

import re
from typing import Optional

from torch import nn

FAMILIES = ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large")
VGG_CONV4_3_END = 23  # torchvision's VGG-16 ``features`` index of pool4, where ``extra.0`` starts
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def identify_family(names: set[str]) -> Optional[str]:
    """The torchvision SSD a state dict's names belong to, or None."""
    if not any(n.startswith("head.classification_head.module_list.") for n in names):
        return None
    if "backbone.scale_weight" in names:
        return "ssd300_vgg16"
    if "backbone.features.1.0.0.0.weight" in names or "backbone.features.0.0.0.weight" in names:
        return "ssdlite320_mobilenet_v3_large"
    return None


def class_conv_name(family: str) -> str:
    """The first level's class-logit bias, whose length is boxes x classes."""
    return ("head.classification_head.module_list.0.bias" if family == "ssd300_vgg16"
            else "head.classification_head.module_list.0.1.bias")


def name_map(family: str, names: list[str], backbone: nn.Module) -> tuple[dict[str, str], list[str]]:
    """{torchvision name: ssdzoo name} for ``names``, and the names that fit no rule.
    ``backbone``: the ssdzoo model's timm backbone (``model.backbone.model``)."""
    rules = _vgg_rules() if family == "ssd300_vgg16" else _ssdlite_rules(backbone)
    mapped, unmapped = {}, []
    for name in names:
        for pattern, target in rules:
            match = pattern.fullmatch(name)
            if match:
                mapped[name] = target(match) if callable(target) else match.expand(target)
                break
        else:
            unmapped.append(name)
    return mapped, unmapped


def _vgg_rules() -> list:
    def conv5(m: re.Match) -> str:  # extra.0.{1,3,5}: conv5_1..conv5_3 after pool4 (extra.0.0)
        return f"backbone.model.features.{VGG_CONV4_3_END + int(m[1])}.{m[2]}"

    return [
        (re.compile(r"backbone\.scale_weight"), "neck.l2norm.weight"),
        (re.compile(r"backbone\.features\.(\d+)\.(weight|bias)"), r"backbone.model.features.\1.\2"),
        (re.compile(r"backbone\.extra\.0\.7\.(\d+)\.(weight|bias)"), r"neck.fc.\1.\2"),  # pool5, fc6, fc7
        (re.compile(r"backbone\.extra\.0\.([135])\.(weight|bias)"), conv5),
        (re.compile(r"backbone\.extra\.([1-9])\.(\d+)\.(weight|bias)"),
         lambda m: f"neck.blocks.{int(m[1]) - 1}.{m[2]}.{m[3]}"),
        (re.compile(r"head\.classification_head\.module_list\.(\d+)\.(weight|bias)"), r"head.cls.\1.0.\2"),
        (re.compile(r"head\.regression_head\.module_list\.(\d+)\.(weight|bias)"), r"head.loc.\1.0.\2"),
    ]


def _conv_bn(prefix: str, conv: str, bn: str) -> list[tuple[str, str]]:
    """torchvision's Conv2dNormActivation ``prefix.0`` (conv) and ``prefix.1`` (BN) -> ``conv``, ``bn``."""
    return [(f"{prefix}.0.weight", f"{conv}.weight")] + [(f"{prefix}.1.{t}", f"{bn}.{t}") for t in _BN_TENSORS]


def _block_parts(block: nn.Module) -> list[tuple[str, ...]]:
    """A timm block's layers in torchvision's order: ("conv", conv, bn) or ("se",)."""
    has_se = hasattr(block, "se") and not isinstance(block.se, nn.Identity)
    if hasattr(block, "conv_pwl"):  # InvertedResidual: expand, depthwise, [SE], project
        return [("conv", "conv_pw", "bn1"), ("conv", "conv_dw", "bn2")] + ([("se",)] if has_se else []) \
            + [("conv", "conv_pwl", "bn3")]
    if hasattr(block, "conv_dw"):  # DepthwiseSeparable: depthwise, [SE], project
        return [("conv", "conv_dw", "bn1")] + ([("se",)] if has_se else []) + [("conv", "conv_pw", "bn2")]
    return [("conv", "conv", "bn1")]  # ConvBnAct: the last 1x1 conv


def _ssdlite_backbone_pairs(backbone: nn.Module) -> list[tuple[str, str]]:
    """(torchvision name, ssdzoo name) for every backbone tensor of torchvision's SSDLite."""
    pairs = _conv_bn("backbone.features.0.0", "backbone.model.conv_stem", "backbone.model.bn1")
    blocks = [(f"blocks.{s}.{b}", block) for s, stage in enumerate(backbone.blocks)
              for b, block in enumerate(stage)]
    split = None  # torchvision splits its C4 block (the last stride-2 one) after the expansion
    for index, (_, block) in enumerate(blocks, start=1):
        if hasattr(block, "conv_pwl") and max(block.conv_dw.stride) > 1:
            split = index
    for index, (name, block) in enumerate(blocks, start=1):  # torchvision's mobilenet ``features`` index
        ours = f"backbone.model.{name}"
        parts = _block_parts(block)
        for i, part in enumerate(parts):
            if index < split:
                theirs = f"backbone.features.0.{index}.block.{i}" if len(parts) > 1 else f"backbone.features.0.{index}"
            elif index == split:
                # the expansion is features.0's last layer; the rest keep their places in ``block``
                theirs = f"backbone.features.0.{index}" if i == 0 else f"backbone.features.1.0.{i}"
            else:
                theirs = (f"backbone.features.1.{index - split}.block.{i}" if len(parts) > 1
                          else f"backbone.features.1.{index - split}")
            if part[0] == "se":
                pairs += [(f"{theirs}.fc1.{t}", f"{ours}.se.conv_reduce.{t}") for t in ("weight", "bias")]
                pairs += [(f"{theirs}.fc2.{t}", f"{ours}.se.conv_expand.{t}") for t in ("weight", "bias")]
            else:
                pairs += _conv_bn(theirs, f"{ours}.{part[1]}", f"{ours}.{part[2]}")
    return pairs


def _ssdlite_rules(backbone: nn.Module) -> list:
    fixed = dict(_ssdlite_backbone_pairs(backbone))
    bn = "|".join(_BN_TENSORS)
    extra_layer = {"0.0": "conv.0.conv", "0.1": "conv.0.bn", "1.0": "conv.1.conv", "1.1": "conv.1.bn",
                   "2.0": "conv.2", "2.1": "conv.3"}  # 1x1 + BN, depthwise + BN, 1x1 + BN (InvertedResidual)
    head_layer = {"0.0": "0.conv", "0.1": "0.bn", "1": "1"}  # depthwise + BN, then the 1x1 conv
    branch = {"classification": "cls", "regression": "loc"}
    return [
        (re.compile("|".join(map(re.escape, fixed))), lambda m: fixed[m[0]]),
        (re.compile(rf"backbone\.extra\.(\d+)\.(\d\.\d)\.({bn})"),
         lambda m: f"neck.blocks.{m[1]}.{extra_layer[m[2]]}.{m[3]}"),
        (re.compile(rf"head\.(classification|regression)_head\.module_list\.(\d+)\.(0\.0|0\.1|1)\.({bn})"),
         lambda m: f"head.{branch[m[1]]}.{m[2]}.{head_layer[m[3]]}.{m[4]}"),
    ]
