"""Name and layout tables: TensorFlow Object Detection API SSDs -> ssdzoo's Detector.

Five families, told apart by their tensor names (``identify_family``):

- ``tf1_ssdlite_mobilenet_v2``: TF1 ssdlite_mobilenet_v2 (TF-slim ``FeatureExtractor/MobilenetV2``,
  depthwise extra layers and box predictors): the seed's ssd_mobilenetv2 layout.
- ``tf1_ssd_mobilenet_v2``: TF1 ssd_mobilenet_v2 (full 3x3 extra convs, one-conv predictors).
- ``tf2_ssd_mobilenet_v2``: TF2 ssd_mobilenet_v2_320x320 (Keras; the same network).
- ``tf2_ssd_mobilenet_v2_fpnlite``: TF2 ssd_mobilenet_v2_fpnlite_320x320 / 640x640 (FPN on
  strides 8-32 plus two levels, depthwise-separable convs, one shared prediction tower).
- ``tf2_ssd_resnet50_v1_fpn``: TF2 ssd_resnet50_v1_fpn_640x640 (RetinaNet-50).

TF-slim names a variable by scope (``.../expanded_conv_3/expand/weights``, ``.../BatchNorm/gamma``);
TF2 object-based checkpoints by object path (``model/_feature_extractor/classification_backbone/
layer_with_weights-12/kernel/.ATTRIBUTES/VARIABLE_VALUE``), where a Keras application's layers
are numbered in graph order, so the tables list timm's modules in that order.

Layouts: conv kernels HWIO -> OIHW, depthwise kernels (H, W, C, 1) -> (C, 1, H, W); BN gamma,
beta, moving_mean, moving_variance -> weight, bias, running_mean, running_var; box predictors
emit (ty, tx, th, tw) per box and ssdzoo's (dx, dy, dw, dh), so their output channels are
reordered; class predictors keep TF's order (background in column 0, as ssdzoo).
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from .mindspore_names import loc_to_xy_order

TF2_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# Variable leaves that hold weights: a constant or checkpoint entry ending so must land somewhere
WEIGHT_LEAVES = {"weights", "biases", "depthwise_weights", "kernel", "bias", "depthwise_kernel",
                 "pointwise_kernel", "gamma", "beta", "moving_mean", "moving_variance"}
BN_LEAVES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
# Entries that are not the network: training state and bookkeeping, with why they are dropped
TRAINING_STATE = [
    (r".*/\.OPTIMIZER_SLOT/.*|optimizer/.*|.*/(Momentum|RMSProp|RMSProp_1|Adam|Adam_1)",
     "optimizer state"),
    (r"(.*/)?global_step|save_counter|beta[12]_power", "training step counter"),
    (r"_CHECKPOINTABLE_OBJECT_GRAPH", "TF2 object graph (metadata)"),
]
EMA_SUFFIX = "/ExponentialMovingAverage"

SLIM, KERAS = "slim", "keras"
MOBILENET_V2_DEPTHS = (1, 2, 3, 4, 3, 3, 1)  # blocks per stage, TF-slim/Keras and timm alike
RESNET50_DEPTHS = (3, 4, 6, 3)
MOBILENET_V2_EXPANSION_BLOCK = 13  # TF's layer_15/expansion_output: block 13's expansion (stride 16)


class Rule(NamedTuple):
    """A TF variable name (full match, TF2 suffix stripped) -> ssdzoo state-dict names."""

    pattern: str
    targets: tuple[str, ...]
    transform: Optional[Callable[[Tensor], Tensor]] = None


class Mapping(NamedTuple):
    targets: dict[str, tuple[str, Tensor]]  # ssdzoo name -> (TF name, tensor in ssdzoo layout)
    dropped: dict[str, str]  # TF name -> why it is not used
    unmapped: list[str]  # TF weight names no rule knows


def hwio_to_oihw(t: Tensor) -> Tensor:
    """A conv kernel (H, W, in, out) -> (out, in, H, W)."""
    return t.permute(3, 2, 0, 1).contiguous()


def depthwise_to_oihw(t: Tensor) -> Tensor:
    """A depthwise kernel (H, W, C, M) -> (C * M, 1, H, W) (output channel c * M + m, as both
    frameworks number them)."""
    h, w, c, m = t.shape
    return t.permute(2, 3, 0, 1).reshape(c * m, 1, h, w).contiguous()


def loc_kernel(t: Tensor) -> Tensor:
    return loc_to_xy_order(hwio_to_oihw(t))


# ---- rule builders ---------------------------------------------------------------------------

def conv(tf: str, pt: str | tuple[str, ...], style: str, *, kind: str = "conv", bias: bool = False,
         loc: bool = False) -> list[Rule]:
    """Rules for one conv: ``kind`` "conv", "depthwise" or "separable" (Keras' SeparableConv2D:
    ``pt``.0 depthwise, ``pt``.1 pointwise); ``loc``: a box predictor (output channels reordered)."""
    pts = (pt,) if isinstance(pt, str) else pt
    tf = re.escape(tf) if "(" not in tf else tf
    weight, depthwise, biases = (("weights", "depthwise_weights", "biases") if style == SLIM
                                 else ("kernel", "depthwise_kernel", "bias"))
    bias_transform = loc_to_xy_order if loc else None
    if kind == "separable":
        rules = [Rule(f"{tf}/{depthwise}", tuple(f"{p}.0.weight" for p in pts), depthwise_to_oihw),
                 Rule(f"{tf}/pointwise_kernel", tuple(f"{p}.1.weight" for p in pts),
                      loc_kernel if loc else hwio_to_oihw)]
        if bias:
            rules.append(Rule(f"{tf}/{biases}", tuple(f"{p}.1.bias" for p in pts), bias_transform))
        return rules
    if kind == "depthwise":
        rules = [Rule(f"{tf}/{depthwise}", tuple(f"{p}.weight" for p in pts), depthwise_to_oihw)]
    else:
        rules = [Rule(f"{tf}/{weight}", tuple(f"{p}.weight" for p in pts), loc_kernel if loc else hwio_to_oihw)]
    if bias:
        rules.append(Rule(f"{tf}/{biases}", tuple(f"{p}.bias" for p in pts), bias_transform))
    return rules


def bn(tf: str, pt: str | tuple[str, ...], style: str) -> list[Rule]:
    """Rules for one BatchNorm (TF-slim: ``tf``/BatchNorm/gamma ...; Keras: ``tf``/gamma ...)."""
    pts = (pt,) if isinstance(pt, str) else pt
    scope = (re.escape(tf) if "(" not in tf else tf) + ("/BatchNorm" if style == SLIM else "")
    return [Rule(f"{scope}/{leaf}", tuple(f"{p}.{name}" for p in pts)) for leaf, name in BN_LEAVES.items()]


def conv_bn(tf_conv: str, pt_conv, tf_bn: str, pt_bn, style: str, *, kind: str = "conv") -> list[Rule]:
    return conv(tf_conv, pt_conv, style, kind=kind) + bn(tf_bn, pt_bn, style)


def mobilenet_v2_blocks() -> list[str]:
    """timm's mobilenetv2 block names, TF's block order: blocks.<stage>.<index>."""
    return [f"blocks.{stage}.{i}" for stage, depth in enumerate(MOBILENET_V2_DEPTHS) for i in range(depth)]


# ---- backbones -------------------------------------------------------------------------------

def slim_mobilenet_v2(prefix: str = "FeatureExtractor/MobilenetV2") -> list[Rule]:
    """TF-slim MobileNetV2 (``Conv``, ``expanded_conv``, ``expanded_conv_1..16``, ``Conv_1``)
    onto timm's mobilenetv2_100; block 13's expansion also feeds ssdzoo's ``neck.expand``."""
    b, blocks = "backbone.model", mobilenet_v2_blocks()
    rules = conv_bn(f"{prefix}/Conv", f"{b}.conv_stem", f"{prefix}/Conv", f"{b}.bn1", SLIM)
    first = f"{prefix}/expanded_conv"
    rules += conv_bn(f"{first}/depthwise", f"{b}.{blocks[0]}.conv_dw", f"{first}/depthwise", f"{b}.{blocks[0]}.bn1",
                     SLIM, kind="depthwise")
    rules += conv_bn(f"{first}/project", f"{b}.{blocks[0]}.conv_pw", f"{first}/project", f"{b}.{blocks[0]}.bn2", SLIM)
    for k, block in enumerate(blocks[1:], start=1):
        scope, pt = f"{prefix}/expanded_conv_{k}", f"{b}.{block}"
        expand_conv, expand_bn = (f"{pt}.conv_pw", f"{pt}.bn1")
        if k == MOBILENET_V2_EXPANSION_BLOCK:
            expand_conv, expand_bn = (expand_conv, "neck.expand.conv"), (expand_bn, "neck.expand.bn")
        rules += conv_bn(f"{scope}/expand", expand_conv, f"{scope}/expand", expand_bn, SLIM)
        rules += conv_bn(f"{scope}/depthwise", f"{pt}.conv_dw", f"{scope}/depthwise", f"{pt}.bn2", SLIM, kind="depthwise")
        rules += conv_bn(f"{scope}/project", f"{pt}.conv_pwl", f"{scope}/project", f"{pt}.bn3", SLIM)
    return rules + conv_bn(f"{prefix}/Conv_1", f"{b}.conv_head", f"{prefix}/Conv_1", f"{b}.bn2", SLIM)


def keras_layers(prefix: str, modules: list[tuple[str, str]]) -> list[Rule]:
    """Rules for a Keras application whose layers are numbered ``layer_with_weights-<i>`` in
    ``modules`` order: (timm module name(s), "conv" | "depthwise" | "bn")."""
    rules = []
    for i, (pt, kind) in enumerate(modules):
        scope = f"{prefix}/layer_with_weights-{i}"
        rules += bn(scope, pt, KERAS) if kind == "bn" else conv(scope, pt, KERAS, kind=kind)
    return rules


def keras_mobilenet_v2_layers(*, expansion_to_neck: bool) -> list[tuple]:
    """tf.keras.applications.MobileNetV2's weighted layers in graph order, as timm modules."""
    b, blocks = "backbone.model", mobilenet_v2_blocks()
    first = f"{b}.{blocks[0]}"
    modules = [(f"{b}.conv_stem", "conv"), (f"{b}.bn1", "bn"), (f"{first}.conv_dw", "depthwise"),
               (f"{first}.bn1", "bn"), (f"{first}.conv_pw", "conv"), (f"{first}.bn2", "bn")]
    for k, block in enumerate(blocks[1:], start=1):
        pt = f"{b}.{block}"
        expand = [(f"{pt}.conv_pw", "conv"), (f"{pt}.bn1", "bn")]
        if expansion_to_neck and k == MOBILENET_V2_EXPANSION_BLOCK:
            expand = [((f"{pt}.conv_pw", "neck.expand.conv"), "conv"), ((f"{pt}.bn1", "neck.expand.bn"), "bn")]
        modules += expand + [(f"{pt}.conv_dw", "depthwise"), (f"{pt}.bn2", "bn"), (f"{pt}.conv_pwl", "conv"),
                             (f"{pt}.bn3", "bn")]
    return modules + [(f"{b}.conv_head", "conv"), (f"{b}.bn2", "bn")]


def keras_resnet50_layers() -> list[tuple]:
    """tf.keras.applications.ResNet50's weighted layers in graph order (each stage's first
    block: 1x1, BN, 3x3, BN, shortcut conv, 1x1, shortcut BN, BN), as timm's resnet50."""
    b = "backbone.model"
    modules = [(f"{b}.conv1", "conv"), (f"{b}.bn1", "bn")]
    for stage, depth in enumerate(RESNET50_DEPTHS, start=1):
        for i in range(depth):
            pt = f"{b}.layer{stage}.{i}"
            head = [(f"{pt}.conv1", "conv"), (f"{pt}.bn1", "bn"), (f"{pt}.conv2", "conv"), (f"{pt}.bn2", "bn")]
            if i == 0:
                modules += head + [(f"{pt}.downsample.0", "conv"), (f"{pt}.conv3", "conv"),
                                   (f"{pt}.downsample.1", "bn"), (f"{pt}.bn3", "bn")]
            else:
                modules += head + [(f"{pt}.conv3", "conv"), (f"{pt}.bn3", "bn")]
    return modules


# ---- necks and heads -------------------------------------------------------------------------

def slim_ssd_extras(prefix: str = "FeatureExtractor/MobilenetV2", *, depthwise: bool) -> list[Rule]:
    """TF-slim extra layers ``layer_19_1_Conv2d_<n>_1x1_<d>`` and ``layer_19_2_Conv2d_<n>_3x3_s2_<d>``
    (ssdlite: with a ``_depthwise`` conv before the second) for n = 2..5 -> neck.blocks.<n-2>."""
    rules = []
    for n in range(2, 6):
        pt = f"neck.blocks.{n - 2}.conv"
        one = rf"{re.escape(prefix)}/layer_19_1_Conv2d_{n}_1x1_\d+"
        two = rf"{re.escape(prefix)}/layer_19_2_Conv2d_{n}_3x3_s2_\d+"
        rules += conv(f"({one})", f"{pt}.0.conv", SLIM) + bn(f"({one})", f"{pt}.0.bn", SLIM)
        if depthwise:
            rules += conv(f"({two}_depthwise)", f"{pt}.1.conv", SLIM, kind="depthwise")
            rules += bn(f"({two}_depthwise)", f"{pt}.1.bn", SLIM)
            rules += conv(f"({two})", f"{pt}.2", SLIM) + bn(f"({two})", f"{pt}.3", SLIM)
        else:
            rules += conv(f"({two})", f"{pt}.1.conv", SLIM) + bn(f"({two})", f"{pt}.1.bn", SLIM)
    return rules


def slim_box_predictors(num_levels: int, *, depthwise: bool) -> list[Rule]:
    """``BoxPredictor_<k>/{BoxEncoding,Class}Predictor[_depthwise]`` -> head.{loc,cls}.<k>."""
    rules = []
    for k in range(num_levels):
        for tf_name, pt, loc in (("BoxEncodingPredictor", f"head.loc.{k}", True),
                                 ("ClassPredictor", f"head.cls.{k}", False)):
            scope = f"BoxPredictor_{k}/{tf_name}"
            if depthwise:
                rules += conv(f"{scope}_depthwise", f"{pt}.0.conv", SLIM, kind="depthwise")
                rules += bn(f"{scope}_depthwise", f"{pt}.0.bn", SLIM)
                rules += conv(scope, f"{pt}.1", SLIM, bias=True, loc=loc)
            else:
                rules += conv(scope, f"{pt}.0", SLIM, bias=True, loc=loc)
    return rules


def keras_ssd_extras(prefix: str = "_feature_extractor/feature_map_generator/convolutions") -> list[Rule]:
    """KerasMultiResolutionFeatureMaps' ``convolutions/<n>/{0 conv, 1 BN, 3 conv, 4 BN}``."""
    rules = []
    for n in range(2, 6):
        pt = f"neck.blocks.{n - 2}.conv"
        rules += conv_bn(f"{prefix}/{n}/0", f"{pt}.0.conv", f"{prefix}/{n}/1", f"{pt}.0.bn", KERAS)
        rules += conv_bn(f"{prefix}/{n}/3", f"{pt}.1.conv", f"{prefix}/{n}/4", f"{pt}.1.bn", KERAS)
    return rules


def keras_box_predictors(num_levels: int, prefix: str = "_box_predictor/_prediction_heads") -> list[Rule]:
    """ConvolutionalBoxPredictor heads, one plain conv per level."""
    rules = []
    for k in range(num_levels):
        rules += conv(f"{prefix}/box_encodings/{k}/_box_encoder_layers/0", f"head.loc.{k}.0", KERAS,
                      bias=True, loc=True)
        rules += conv(f"{prefix}/class_predictions_with_background/{k}/_class_predictor_layers/0",
                      f"head.cls.{k}.0", KERAS, bias=True)
    return rules


def keras_fpn(num_backbone_levels: int, num_extra: int, *, separable: bool,
              prefix: str = "_feature_extractor") -> list[Rule]:
    """KerasFpnTopDownFeatureMaps (``top_layers`` the coarsest projection, ``residual_blocks/<j>``
    and ``conv_layers/<j>`` level n-2-j, coarse to fine) and the ``_coarse_feature_layers``."""
    kind = "separable" if separable else "conv"
    fpn, top = f"{prefix}/_fpn_features_generator", num_backbone_levels - 1
    rules = conv(f"{fpn}/top_layers/0", f"neck.lateral.{top}", KERAS, bias=True)
    for j in range(num_backbone_levels - 1):
        level = top - 1 - j
        rules += conv(f"{fpn}/residual_blocks/{j}/0", f"neck.lateral.{level}", KERAS, bias=True)
        rules += conv(f"{fpn}/conv_layers/{j}/0", f"neck.smooth.{level}.conv", KERAS, kind=kind)
        rules += bn(f"{fpn}/conv_layers/{j}/1", f"neck.smooth.{level}.bn", KERAS)
    for j in range(num_extra):
        rules += conv(f"{prefix}/_coarse_feature_layers/{j}/0", f"neck.extra.{j}.conv", KERAS, kind=kind)
        rules += bn(f"{prefix}/_coarse_feature_layers/{j}/1", f"neck.extra.{j}.bn", KERAS)
    return rules


def keras_shared_head(num_levels: int, depth: int, *, separable: bool, share_tower: bool,
                      prefix: str = "_box_predictor") -> list[Rule]:
    """WeightSharedConvolutionalBoxPredictor: tower convs (one set, ``PredictionTower``, when
    shared; else ``BoxPredictionTower`` and ``ClassPredictionTower``), per-level BNs
    (``_base_tower_layers_for_heads/<head>/<level>/<3i+1>``), then the two predictor convs."""
    kind = "separable" if separable else "conv"
    towers = ([("PredictionTower", "box_encodings", "loc_tower")] if share_tower else
              [("BoxPredictionTower", "box_encodings", "loc_tower"),
               ("ClassPredictionTower", "class_predictions_with_background", "cls_tower")])
    rules = []
    for tf_tower, tf_head, pt in towers:
        for i in range(depth):
            rules += conv(f"{prefix}/_head_scope_conv_layers/{tf_tower}/{i}", f"head.{pt}.convs.{i}", KERAS,
                          kind=kind, bias=True)
            for level in range(num_levels):
                rules += bn(f"{prefix}/_base_tower_layers_for_heads/{tf_head}/{level}/{3 * i + 1}",
                            f"head.{pt}.norms.{level}.{i}", KERAS)
    rules += conv(f"{prefix}/_box_prediction_head/_box_encoder_layers/0", "head.loc", KERAS, kind=kind,
                  bias=True, loc=True)
    rules += conv(f"{prefix}/_prediction_heads/class_predictions_with_background/_class_predictor_layers/0",
                  "head.cls", KERAS, kind=kind, bias=True)
    return rules


# ---- families --------------------------------------------------------------------------------

FAMILIES = ("tf1_ssdlite_mobilenet_v2", "tf1_ssd_mobilenet_v2", "tf2_ssd_mobilenet_v2",
            "tf2_ssd_mobilenet_v2_fpnlite", "tf2_ssd_resnet50_v1_fpn")


def weight_names(names) -> list[str]:
    """The names that hold network weights (by their last component)."""
    return [n for n in names if n.rpartition("/")[2] in WEIGHT_LEAVES]


def identify_family(names: set[str]) -> Optional[str]:
    """Which TF OD API SSD family a file's (normalized) names belong to; None if none."""
    def has(pattern: str) -> bool:
        compiled = re.compile(pattern)
        return any(compiled.fullmatch(n) for n in names)

    if has(r"FeatureExtractor/MobilenetV2/Conv/weights") and has(r"BoxPredictor_0/.*"):
        return ("tf1_ssdlite_mobilenet_v2" if has(r"BoxPredictor_0/BoxEncodingPredictor_depthwise/.*")
                else "tf1_ssd_mobilenet_v2")
    backbone = "_feature_extractor/classification_backbone/layer_with_weights-0/kernel"
    if backbone in names:
        if has(r"_feature_extractor/feature_map_generator/convolutions/.*") and \
                has(r"_box_predictor/_prediction_heads/box_encodings/0/.*"):
            return "tf2_ssd_mobilenet_v2"
        if has(r"_feature_extractor/_fpn_features_generator/.*"):
            if has(r"_feature_extractor/classification_backbone/layer_with_weights-2/depthwise_kernel"):
                return "tf2_ssd_mobilenet_v2_fpnlite"
            return "tf2_ssd_resnet50_v1_fpn"
    return None


def family_rules(family: str, *, num_levels: int, num_backbone_levels: int = 3, depth: int = 4) -> list[Rule]:
    """Every rule of ``family`` for a model with ``num_levels`` pyramid levels."""
    if family == "tf1_ssdlite_mobilenet_v2":
        return (slim_mobilenet_v2() + slim_ssd_extras(depthwise=True)
                + slim_box_predictors(num_levels, depthwise=True))
    if family == "tf1_ssd_mobilenet_v2":
        return (slim_mobilenet_v2() + slim_ssd_extras(depthwise=False)
                + slim_box_predictors(num_levels, depthwise=False))
    if family == "tf2_ssd_mobilenet_v2":
        backbone = keras_layers("_feature_extractor/classification_backbone",
                                keras_mobilenet_v2_layers(expansion_to_neck=True))
        return backbone + keras_ssd_extras() + keras_box_predictors(num_levels)
    num_extra = num_levels - num_backbone_levels
    if family == "tf2_ssd_mobilenet_v2_fpnlite":
        backbone = keras_layers("_feature_extractor/classification_backbone",
                                keras_mobilenet_v2_layers(expansion_to_neck=False))
        return (backbone + keras_fpn(num_backbone_levels, num_extra, separable=True)
                + keras_shared_head(num_levels, depth, separable=True, share_tower=True))
    if family == "tf2_ssd_resnet50_v1_fpn":
        backbone = keras_layers("_feature_extractor/classification_backbone", keras_resnet50_layers())
        return (backbone + keras_fpn(num_backbone_levels, num_extra, separable=False)
                + keras_shared_head(num_levels, depth, separable=False, share_tower=False))
    raise ValueError(f"unknown TensorFlow family {family!r}; known: {', '.join(FAMILIES)}")


def normalize_name(name: str) -> str:
    """A TF2 object-graph key as a path below the model (``model/`` of a checkpoint,
    ``_model/`` of a SavedModel, and the suffix removed); TF1 names as they are."""
    if name.endswith(TF2_SUFFIX):
        name = name[:-len(TF2_SUFFIX)]
        for root in ("model/", "_model/"):
            if name.startswith(root):
                return name[len(root):]
    return name


def apply_rules(tensors: dict[str, Tensor], rules: list[Rule]) -> Mapping:
    """Map TF tensors (normalized names) through ``rules``; training state and graph constants
    are dropped with their reason; a weight no rule knows is ``unmapped``."""
    compiled = [(re.compile(r.pattern), r) for r in rules]
    state = [(re.compile(p), why) for p, why in TRAINING_STATE]
    result = Mapping({}, {}, [])
    for name, tensor in tensors.items():
        why = next((w for c, w in state if c.fullmatch(name)), None)
        if why is not None:
            result.dropped[name] = why
            continue
        rule = next((r for c, r in compiled if c.fullmatch(name)), None)
        if rule is None:
            if name.rpartition("/")[2] in WEIGHT_LEAVES:
                result.unmapped.append(name)
            else:
                result.dropped[name] = "graph constant (shapes, anchors, pre/post-processing)"
            continue
        value = rule.transform(tensor) if rule.transform else tensor
        for i, target in enumerate(rule.targets):  # a TF tensor feeding two ssdzoo modules: two copies
            if target in result.targets:
                raise ValueError(f"TensorFlow tensors {result.targets[target][0]!r} and {name!r} both "
                                 f"map to {target!r}")
            result.targets[target] = (name, value if i == 0 else value.clone())
    return result


def use_moving_averages(tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """A TF1 checkpoint trained with weight averaging holds ``X`` and ``X/ExponentialMovingAverage``:
    take the averages (what TF's evaluation and export use), drop the raw values."""
    averaged = {n[:-len(EMA_SUFFIX)] for n in tensors if n.endswith(EMA_SUFFIX)}
    if not averaged:
        return tensors, {}
    out = {n: t for n, t in tensors.items() if not n.endswith(EMA_SUFFIX) and n not in averaged}
    out.update({n: tensors[n + EMA_SUFFIX] for n in averaged})
    return out, {n: "raw value; its ExponentialMovingAverage is used" for n in averaged}


def zero_bias_targets(own: dict[str, Tensor], state: dict[str, Tensor]) -> dict[str, Tensor]:
    """ssdzoo tensors TF has no counterpart for that are exactly zero in TF's computation: the
    weight-shared towers' conv biases (TF's tower convs feed BN and carry none)."""
    return {k: torch.zeros_like(v) for k, v in own.items()
            if k not in state and re.fullmatch(r"head\.(loc|cls)_tower\.convs\.\d+(\.1)?\.bias", k)}
