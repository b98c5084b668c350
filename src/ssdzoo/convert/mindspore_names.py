"""Name tables: MindCV's backbones -> timm, the seed's SSD -> ssdzoo.

Each table is a list of ``Rule``s, rewrites of a checkpoint module path written from MindCV's
model code (mindcv/models/mobilenetv2.py, mobilenetv3.py, resnet.py) and the seed's
(examples/det/ssd/model.py). MindSpore's BN holds gamma/beta/moving_mean/moving_variance where
PyTorch's holds weight/bias/running_mean/running_var. The seed's loc convs emit (dy, dx, dh, dw)
per box and ssdzoo's (dx, dy, dw, dh), so their output channels are permuted on the way.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

# MindSpore parameter name -> PyTorch's (convs and dense layers keep weight/bias)
PARAM_NAMES = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
               "moving_mean": "running_mean", "moving_variance": "running_var"}
DROP = "drop"  # a Rule target: the tensor has no counterpart and is reported, not used


class Rule(NamedTuple):
    """``pattern`` (a full match on a checkpoint module path) -> ``target`` (a ``re`` template),
    or DROP with ``why``; ``transform`` adapts the tensor (channel order, layout)."""

    pattern: str
    target: str
    transform: Optional[Callable[[Tensor], Tensor]] = None
    why: str = ""


class Mapping(NamedTuple):
    targets: dict[str, tuple[str, Tensor]]  # target name -> (checkpoint tag, tensor)
    dropped: dict[str, str]  # checkpoint tag -> why it is not used
    unmapped: list[str]  # checkpoint tags no rule knows


def loc_to_xy_order(t: Tensor) -> Tensor:
    """A loc conv's weight (B*4, ...) or bias (B*4,): output channels (dy, dx, dh, dw) per box
    -> (dx, dy, dw, dh)."""
    order = torch.arange(t.shape[0]).view(-1, 4)[:, [1, 0, 3, 2]].reshape(-1)
    return t.index_select(0, order)


def dense_to_conv1x1(t: Tensor) -> Tensor:
    """A dense layer's (out, in) weight as a 1x1 conv's (out, in, 1, 1); biases pass through."""
    return t[:, :, None, None] if t.ndim == 2 else t


# ---- MindCV backbones -> timm ---------------------------------------------------------------

# Blocks per stage (the papers' "n"), the same in MindCV and timm
MOBILENET_STAGE_DEPTHS = {"mobilenetv2": (1, 2, 3, 4, 3, 3, 1), "mobilenetv3_large": (1, 2, 3, 4, 2, 3)}
MOBILENET_FIRST_BLOCK = 3  # MindCV features.0-2: stem conv, BN, activation
# MindCV block features.<k>.layers.<i> (activations hold no tensors) -> timm block submodule
DEPTHWISE_SEPARABLE = {0: "conv_dw", 1: "bn1", 3: "conv_pw", 4: "bn2"}  # first block: no expansion
INVERTED_RESIDUAL = {0: "conv_pw", 1: "bn1", 3: "conv_dw", 4: "bn2", 6: "conv_pwl", 7: "bn3"}
INVERTED_RESIDUAL_SE = {0: "conv_pw", 1: "bn1", 3: "conv_dw", 4: "bn2", 6: "se", 7: "conv_pwl", 8: "bn3"}
CLASSIFIER = "classifier (ImageNet head)"


def backbone_family(timm_name: str) -> str:
    """The MindCV architecture whose checkpoints map onto timm model ``timm_name``."""
    families = {r"mobilenetv2_(035|050|075|100|140)": "mobilenetv2",
                r"mobilenetv3_large_(075|100)": "mobilenetv3_large",
                r"resnet(18|34|50|101|152)": "resnet"}
    for pattern, family in families.items():
        if re.fullmatch(pattern, timm_name):
            return family
    raise ValueError(f"no MindCV checkpoint mapping for timm backbone {timm_name!r}; supported: "
                     "mobilenetv2_100 (MindCV mobilenet_v2_100), mobilenetv3_large_100 "
                     "(mobilenet_v3_large_100), resnet50 (resnet50) and their widths/depths")


def mindcv_module_name(tag: str, strip: str = "") -> str:
    """A MindCV tag as the classification model names it: ``strip`` removed, and the
    features_only wrapper's flattened ``features_<k>`` back to ``features.<k>``."""
    return re.sub(r"^features_(\d+)", r"features.\1", tag[len(strip):])


def mobilenet_rules(family: str, names: list[str]) -> list[Rule]:
    """MindCV MobileNetV2 / V3-Large (``features.<k>``, ``classifier.<i>``) -> timm. ``names``
    (the checkpoint's) tell which blocks have squeeze-excite, which adds a layer."""
    depths = MOBILENET_STAGE_DEPTHS[family]
    rules = [Rule(r"features\.0", "conv_stem"), Rule(r"features\.1", "bn1")]
    k = MOBILENET_FIRST_BLOCK
    for stage, depth in enumerate(depths):
        for j in range(depth):
            if k == MOBILENET_FIRST_BLOCK:
                table = DEPTHWISE_SEPARABLE
            elif any(n.startswith(f"features.{k}.layers.8.") for n in names):
                table = INVERTED_RESIDUAL_SE
            else:
                table = INVERTED_RESIDUAL
            rules += [Rule(rf"features\.{k}\.layers\.{i}(\..+)?", rf"blocks.{stage}.{j}.{name}\1")
                      for i, name in table.items()]
            k += 1
    if family == "mobilenetv2":  # last 1x1 conv 320 -> 1280, then the classifier
        return rules + [Rule(rf"features\.{k}", "conv_head"), Rule(rf"features\.{k + 1}", "bn2"),
                        Rule(r"classifier\.1", DROP, why=CLASSIFIER)]
    last = len(depths)  # last 1x1 conv 160 -> 960; MindCV's first dense layer is timm's conv_head
    return rules + [Rule(rf"features\.{k}", f"blocks.{last}.0.conv"),
                    Rule(rf"features\.{k + 1}", f"blocks.{last}.0.bn1"),
                    Rule(r"classifier\.0", "conv_head", dense_to_conv1x1),
                    Rule(r"classifier\.3", DROP, why=CLASSIFIER)]


RESNET_RULES = [
    Rule(r"(conv1|bn1)", r"\1"),
    Rule(r"(layer\d+\.\d+\.(conv|bn)\d)", r"\1"),
    Rule(r"(layer\d+\.\d+)\.down_sample\.([01])", r"\1.downsample.\2"),
    Rule(r"classifier", DROP, why=CLASSIFIER),
]


def backbone_rules(family: str, names: list[str]) -> list[Rule]:
    return RESNET_RULES if family == "resnet" else mobilenet_rules(family, names)


# ---- the seed's SSD -> ssdzoo's Detector ---------------------------------------------------

SSD_BACKBONE_PREFIX = "backbone_wrapper.backbone.net."  # MindCV's features_only wrapper
SSD_RULES = [
    # MobileNet recipes: stride-16 expansion (V2: the seed's ConvBNReLU; V3: a plain sequence)
    Rule(r"backbone_wrapper\.feature1_expand_layer\.(features\.)?0", "neck.expand.conv"),
    Rule(r"backbone_wrapper\.feature1_expand_layer\.(features\.)?1", "neck.expand.bn"),
    # extra inverted-residual blocks: ConvBNReLU (features.0 conv, features.1 BN) or conv / BN
    Rule(r"backbone_wrapper\.multi_residual\.(\d+)\.conv\.(\d+)\.features\.0",
         r"neck.blocks.\1.conv.\2.conv"),
    Rule(r"backbone_wrapper\.multi_residual\.(\d+)\.conv\.(\d+)\.features\.1",
         r"neck.blocks.\1.conv.\2.bn"),
    Rule(r"backbone_wrapper\.multi_residual\.(\d+)\.conv\.(\d+)", r"neck.blocks.\1.conv.\2"),
    # MultiBox: per level depthwise conv (0), BN (1), ReLU6, 1x1 conv (3)
    Rule(r"multi_box\.multi_loc_layers\.(\d+)\.0", r"head.loc.\1.0.conv"),
    Rule(r"multi_box\.multi_loc_layers\.(\d+)\.1", r"head.loc.\1.0.bn"),
    Rule(r"multi_box\.multi_loc_layers\.(\d+)\.3", r"head.loc.\1.1", loc_to_xy_order),
    Rule(r"multi_box\.multi_cls_layers\.(\d+)\.0", r"head.cls.\1.0.conv"),
    Rule(r"multi_box\.multi_cls_layers\.(\d+)\.1", r"head.cls.\1.0.bn"),
    Rule(r"multi_box\.multi_cls_layers\.(\d+)\.3", r"head.cls.\1.1"),
    # ResNet50-FPN recipe: FPN top-down, bottom-up levels
    Rule(r"backbone_wrapper\.fpn\.lateral_convs_list\.(\d+)", r"neck.lateral.\1"),
    Rule(r"backbone_wrapper\.fpn\.fpn_convs_list\.(\d+)\.features\.0", r"neck.smooth.\1.conv"),
    Rule(r"backbone_wrapper\.fpn\.fpn_convs_list\.(\d+)\.features\.1", r"neck.smooth.\1.bn"),
    Rule(r"backbone_wrapper\.bottom_up\.blocks\.(\d+)\.features\.0", r"neck.extra.\1.conv"),
    Rule(r"backbone_wrapper\.bottom_up\.blocks\.(\d+)\.features\.1", r"neck.extra.\1.bn"),
    # WeightSharedMultiBox: addition_layer_<loc|cls>.<level>.<depth>; the conv is one tensor
    # shared by all levels (MindSpore names it after the level that holds it), the BN per level
    Rule(r"multi_box\.addition_layer_(loc|cls)\.\d+\.(\d+)\.features\.0", r"head.\1_tower.convs.\2"),
    Rule(r"multi_box\.addition_layer_(loc|cls)\.(\d+)\.(\d+)\.features\.1", r"head.\1_tower.norms.\2.\3"),
    Rule(r"multi_box\.loc_layers\.0", "head.loc", loc_to_xy_order),
    Rule(r"multi_box\.cls_layers\.0", "head.cls"),
]


def apply_rules(tags: dict[str, Tensor], rules: list[Rule], *, prefix: str = "",
                rename: Callable[[str], str] = str) -> Mapping:
    """Map checkpoint tensors through ``rules``, matched on the module path of ``rename(tag)``;
    ``prefix`` goes before every target. Two tags mapping to one target must hold equal
    values (a shared tensor written twice), else it is an error."""
    compiled = [(re.compile(r.pattern), r) for r in rules]
    result = Mapping({}, {}, [])
    for tag, tensor in tags.items():
        module, _, param = rename(tag).rpartition(".")
        rule, match = next(((r, m) for c, r in compiled if (m := c.fullmatch(module))), (None, None))
        if rule is None or param not in PARAM_NAMES:
            result.unmapped.append(tag)
        elif rule.target == DROP:
            result.dropped[tag] = rule.why
        else:
            target = f"{prefix}{match.expand(rule.target)}.{PARAM_NAMES[param]}"
            value = rule.transform(tensor) if rule.transform else tensor
            if target not in result.targets:
                result.targets[target] = (tag, value)
                continue
            first_tag, first = result.targets[target]
            if first.shape != value.shape or not torch.equal(first, value):
                raise ValueError(f"checkpoint tensors {first_tag!r} and {tag!r} both map to "
                                 f"{target!r} but differ")
            result.dropped[tag] = f"same shared tensor as {first_tag}"
    return result


def map_backbone(tags: dict[str, Tensor], family: str, *, strip: str = "", prefix: str = "") -> Mapping:
    """MindCV backbone tensors (classification or features_only names, ``strip`` removed)
    -> timm names (with ``prefix``)."""
    def rename(tag: str) -> str:
        return mindcv_module_name(tag, strip)

    return apply_rules(tags, backbone_rules(family, [rename(t) for t in tags]), prefix=prefix,
                       rename=rename)
