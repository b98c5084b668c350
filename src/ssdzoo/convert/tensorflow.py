"""TensorFlow Object Detection API SSDs as ssdzoo models, without TensorFlow.

A TF1 frozen graph (``frozen_inference_graph.pb``), a TF1 or TF2 checkpoint (``model.ckpt``,
``checkpoint/ckpt-0``) or a SavedModel folder is read by ``tensorflow_files``, its family told
and its names mapped by ``tensorflow_names``. Two things come out:

- ``tensorflow_config(cfg, path)``: the config the file's network needs, so that ssdzoo computes
  what TensorFlow computes: the family's layers (``extras_block``, ``head_conv``, the FPN
  keys, ...), its numerics (``anchor_centres: tensorflow``, ``image_resize: legacy``,
  ``nms_plus_one: false``, ``backbone_bn_eps: 0.001``, "same" padding on every stride-2 conv,
  inputs scaled to [-1, 1] or mean-subtracted), and what the file says: the class count (read
  from the class predictor's shape), the input size and NMS threshold (from a frozen graph's
  constants, or a ``pipeline.config`` beside a checkpoint). The recipe given keeps its
  training and evaluation keys.
- ``tensorflow_to_ssdzoo(path, model, cfg)``: a complete state dict for the model built from
  that config. Every tensor of the file is used or reported as not used (logged with the
  reason); a weight that fits nowhere, or a model tensor the file lacks, is an error naming it.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, NamedTuple, Optional

from torch import Tensor, nn

from ..anchors import default_boxes
from ..config import COCO_CLASSES, config_from_dict, parse_overrides
from .conversion import Conversion, complete, log_dropped, save_safetensors
from .tensorflow_files import TFFileError, bundle_prefix, read_tf_checkpoint, read_tf_graph
from .tensorflow_names import (FAMILIES, apply_rules, family_rules, identify_family, normalize_name,
                               use_moving_averages, weight_names, zero_bias_targets)

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)

TF_BN_EPS = 1e-3  # TF-slim's and the OD API configs' batch_norm epsilon
TF_SAME_PADDING_MOBILENET = ("conv_stem", "blocks.*.*.conv_dw")  # every stride-2 conv of MobileNetV2
KERAS_RESNET_MEANS = (123.68, 116.779, 103.939)  # the OD API's ResNet preprocessing: x - mean, RGB

# Numerics every family shares: what TF computes where ssdzoo's defaults (the seed's) differ
TF_NUMERICS = dict(anchor_centres="tensorflow", image_resize="legacy", nms_plus_one=False,
                   backbone_bn_eps=TF_BN_EPS, bn_eps=TF_BN_EPS, expand_bn_eps=TF_BN_EPS, pad_mode="same",
                   prior_scaling=(0.1, 0.2), nms_threshold=0.6, max_boxes=100, cls_prior=0.0,
                   backbone_kwargs={}, backbone_ckpt_path=None, backbone_pretrained=False, ckpt_path=None)
_MOBILENET_SSD = dict(
    backbone="mobilenetv2_100", backbone_out_indices=(3, 4), backbone_use_head=True,
    backbone_same_padding=TF_SAME_PADDING_MOBILENET, resnet_stride_in_1x1=False, use_fpn=False,
    extras_in_channels=(256, 576, 1280, 512, 256, 256), extras_out_channels=(576, 1280, 512, 256, 256, 128),
    extras_strides=(1, 1, 2, 2, 2, 2), extras_ratio=(0.2, 0.2, 0.2, 0.25, 0.5, 0.25), expand_act="relu6",
    num_default=(3, 6, 6, 6, 6, 6), min_scale=0.2, max_scale=0.95,
    aspect_ratios=((), (2, 3), (2, 3), (2, 3), (2, 3), (2, 3)),
    explicit_aspect_ratios=(1.0, 2.0, 0.5, 3.0, 0.3333),  # TF's ssd_anchor_generator writes 1/3 so
    use_anchor_generator=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
_FPN = dict(
    use_fpn=True, backbone_out_indices=(2, 3, 4), num_addition_layers=4, fpn_upsample="nearest",
    fpn_smooth_top=False, fpn_smoothed_top_down=True, num_default=(6,) * 5, use_anchor_generator=True,
    anchor_scale=4.0, scales_per_octave=2, anchor_aspect_ratios=(1.0, 2.0, 0.5), steps=(8, 16, 32, 64, 128),
    aspect_ratios=((2, 3),) * 5, explicit_aspect_ratios=None, extras_block="inverted_residual")
FAMILY_CONFIG = {
    "tf1_ssdlite_mobilenet_v2": dict(_MOBILENET_SSD, extras_block="inverted_residual", head_conv="separable"),
    "tf1_ssd_mobilenet_v2": dict(_MOBILENET_SSD, extras_block="conv", head_conv="plain"),
    "tf2_ssd_mobilenet_v2": dict(_MOBILENET_SSD, extras_block="conv", head_conv="plain"),
    "tf2_ssd_mobilenet_v2_fpnlite": dict(
        _FPN, backbone="mobilenetv2_100", backbone_use_head=True, backbone_same_padding=TF_SAME_PADDING_MOBILENET,
        resnet_stride_in_1x1=False, extras_out_channels=(128,) * 5, fpn_separable=True, head_conv="separable",
        head_share_tower=True, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "tf2_ssd_resnet50_v1_fpn": dict(
        _FPN, backbone="resnet50", backbone_use_head=False, backbone_same_padding=("maxpool",),
        resnet_stride_in_1x1=True, backbone_kwargs={"act_layer": "relu6"}, extras_out_channels=(256,) * 5,
        fpn_separable=False, head_conv="plain", head_share_tower=False,
        mean=tuple(m / 255 for m in KERAS_RESNET_MEANS), std=(1 / 255,) * 3),
}
# The zoo's input size, used when a checkpoint comes without its pipeline.config
FAMILY_IMAGE_SIZE = {"tf1_ssdlite_mobilenet_v2": 300, "tf1_ssd_mobilenet_v2": 300, "tf2_ssd_mobilenet_v2": 300,
                     "tf2_ssd_mobilenet_v2_fpnlite": 320, "tf2_ssd_resnet50_v1_fpn": 640}
# TF1 frozen graphs: constants that state the input size and the NMS rule
GRAPH_IMAGE_SIZE = "Preprocessor/map/while/ResizeImage/stack"
GRAPH_IOU_THRESHOLD = re.compile(r"Postprocessor/.*non_max_suppression/iou_threshold")
# COCO 2017's category ids with no category: TF's 91-column COCO models keep their columns
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)


class TFSource(NamedTuple):
    """A TensorFlow file's tensors (names normalized), and what else it says."""

    path: Path
    kind: str  # "frozen graph" | "checkpoint"
    family: str
    tensors: dict[str, Tensor]
    dropped: dict[str, str]  # entries not read as weights, with why
    facts: dict  # config values the file states (image_size, nms_threshold, bn_eps)


def is_tensorflow_file(path: str | Path) -> bool:
    """A TensorFlow graph (.pb) or checkpoint (bundle prefix, .index/.data file or folder)."""
    path = Path(path)
    return path.suffix == ".pb" or bundle_prefix(path) is not None or (path / "saved_model.pb").is_file()


def read_tensorflow(path: str | Path) -> TFSource:
    """Read a TF OD API SSD file and tell its family; a file of another architecture fails."""
    path = Path(path)
    prefix = bundle_prefix(path)
    facts: dict = {}
    if prefix is not None:
        checkpoint = read_tf_checkpoint(prefix)
        tensors, dropped = use_moving_averages({normalize_name(k): v for k, v in checkpoint.tensors.items()})
        dropped.update({k: "string entry (metadata)" for k in checkpoint.strings})
        kind = "checkpoint"
        facts.update(_pipeline_config_facts(prefix))
    else:
        if path.is_dir():
            path = path / "saved_model.pb"
        graph = read_tf_graph(path)
        tensors, dropped, kind = dict(graph.tensors), {k: "string constant" for k in graph.strings}, "frozen graph"
        facts.update(_graph_facts(graph))
    family = identify_family(set(tensors))
    if family is None:
        shown = ", ".join(weight_names(tensors)[:5]) or ", ".join(list(tensors)[:5])
        raise TFFileError(f"{path}: not a TensorFlow Object Detection API SSD ssdzoo can convert (known: "
                          f"{', '.join(FAMILIES)}); its tensors include {shown}")
    return TFSource(path, kind, family, tensors, dropped, facts)


def _graph_facts(graph) -> dict:
    facts = {}
    size = graph.tensors.get(GRAPH_IMAGE_SIZE)
    if size is not None and size.numel() == 2:
        facts["image_size"] = tuple(int(v) for v in size)
    iou = [t for name, t in graph.tensors.items() if GRAPH_IOU_THRESHOLD.fullmatch(name)]
    if iou:
        facts["nms_threshold"] = round(float(iou[0]), 6)
    eps = {round(float(node.attrs["epsilon"]), 9) for node in graph.nodes.values()
           if node.op.startswith("FusedBatchNorm") and "epsilon" in node.attrs}
    if len(eps) == 1:
        facts["bn_eps"] = eps.pop()
    return facts


def _pipeline_config_facts(prefix: Path) -> dict:
    """Input size and NMS threshold from a ``pipeline.config`` next to a checkpoint or up to two
    folders above it, where the TF zoo's archives ship it (``checkpoint/``, ``saved_model/variables/``
    beside it); {} when there is none."""
    for folder in (prefix.parent, prefix.parent.parent, prefix.parent.parent.parent):
        config = folder / "pipeline.config"
        if config.is_file():
            text = config.read_text(encoding="utf-8", errors="replace")
            facts = {}
            size = re.search(r"fixed_shape_resizer\s*\{\s*height:\s*(\d+)\s*width:\s*(\d+)", text)
            if size:
                facts["image_size"] = (int(size.group(1)), int(size.group(2)))
            iou = re.search(r"iou_threshold:\s*([0-9.eE+-]+)", text)
            if iou:
                facts["nms_threshold"] = float(iou.group(1))
            return facts
    return {}


def class_count(source: TFSource, num_default: tuple[int, ...]) -> int:
    """Classes including background, from the first class predictor's output channels."""
    names = {
        "tf1_ssdlite_mobilenet_v2": "BoxPredictor_0/ClassPredictor/biases",
        "tf1_ssd_mobilenet_v2": "BoxPredictor_0/ClassPredictor/biases",
        "tf2_ssd_mobilenet_v2": "_box_predictor/_prediction_heads/class_predictions_with_background/0/"
                                "_class_predictor_layers/0/bias",
    }
    name = names.get(source.family, "_box_predictor/_prediction_heads/class_predictions_with_background/"
                                    "_class_predictor_layers/0/bias")
    if name not in source.tensors:
        raise TFFileError(f"{source.path}: lacks {name!r}, the class predictor the class count is read from")
    outputs = source.tensors[name].numel()
    if outputs % num_default[0]:
        raise TFFileError(f"{source.path}: {name!r} has {outputs} outputs, not a multiple of "
                          f"{num_default[0]} boxes per place")
    return outputs // num_default[0]


def head_kernel_size(source: TFSource) -> Optional[int]:
    """The plain per-level head's kernel size, from the first box predictor's kernel."""
    for name in ("BoxPredictor_0/BoxEncodingPredictor/weights",
                 "_box_predictor/_prediction_heads/box_encodings/0/_box_encoder_layers/0/kernel"):
        if name in source.tensors and source.tensors[name].ndim == 4:
            return int(source.tensors[name].shape[0])
    return None


def read_label_map(path: str | Path) -> dict[int, str]:
    """A TF OD API label map (``item { id: 1 name: '...' display_name: 'person' }``, protobuf
    text format): id -> display name (or name)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    labels = {}
    for item in re.finditer(r"item\s*\{(.*?)\}", text, flags=re.S):
        body = item.group(1)
        ident = re.search(r"\bid\s*:\s*(\d+)", body)
        name = (re.search(r"\bdisplay_name\s*:\s*['\"](.*?)['\"]", body)
                or re.search(r"\bname\s*:\s*['\"](.*?)['\"]", body))
        if ident is None or name is None:
            raise ValueError(f"{path}: a label map item without an id or a name: {body.strip()[:80]!r}")
        labels[int(ident.group(1))] = name.group(1)
    if not labels:
        raise ValueError(f"{path}: no 'item {{ id: ... name: ... }}' entries (not a TF label map?)")
    return labels


def class_names(num_classes: int, labels: Optional[dict[int, str]] = None) -> tuple[str, ...]:
    """Names for columns 0..num_classes-1: a label map's (ids are columns), else COCO's for a
    91-column COCO model (TF numbers its classes by COCO category id), else placeholders."""
    if labels is None and num_classes == 91:
        coco_ids = [i for i in range(1, 91) if i not in COCO_UNUSED_IDS]
        labels = dict(zip(coco_ids, COCO_CLASSES[1:]))
        labels.update({i: f"unused_{i}" for i in COCO_UNUSED_IDS})
    labels = labels or {}
    beyond = sorted(i for i in labels if not 0 < i < num_classes)
    if beyond:
        raise ValueError(f"label map ids {beyond} do not fit a model of {num_classes - 1} classes")
    return ("background",) + tuple(labels.get(i, f"class_{i}") for i in range(1, num_classes))


def _pyramid(image_size: int, strides: tuple[int, ...], levels: int) -> tuple[int, ...]:
    sizes = [math.ceil(image_size / s) for s in strides]
    while len(sizes) < levels:
        sizes.append(math.ceil(sizes[-1] / 2))
    return tuple(sizes)


def tensorflow_config(cfg: "Config", path: str | Path, overrides: Iterable[str] = (), *,
                      label_map: Optional[str | Path] = None, source: Optional[TFSource] = None) -> "Config":
    """``cfg`` with the layers and numerics of the TF OD API model in ``path`` (module
    docstring), then ``overrides`` (``key=value``, parsed as ``load_config`` does), which win."""
    user = parse_overrides(overrides)
    source = source or read_tensorflow(path)
    family = source.family
    values = {**TF_NUMERICS, **FAMILY_CONFIG[family]}
    facts = source.facts
    if "bn_eps" in facts:
        values.update(backbone_bn_eps=facts["bn_eps"], bn_eps=facts["bn_eps"], expand_bn_eps=facts["bn_eps"])
    if "nms_threshold" in facts:
        values["nms_threshold"] = facts["nms_threshold"]
    if "image_size" in user:
        image_size = tuple(user["image_size"])
    elif "image_size" in facts:
        image_size = facts["image_size"]
    else:
        side = FAMILY_IMAGE_SIZE[family]
        image_size = (side, side)
        log.warning("%s: no pipeline.config beside the checkpoint; taking the zoo's input size %dx%d "
                    "for %s (override with image_size=[H,W])", source.path, side, side, family)
    if image_size[0] != image_size[1]:
        raise ValueError(f"{source.path}: a {image_size[0]}x{image_size[1]} input; ssdzoo's TF anchors "
                         "need a square one")
    values["image_size"] = image_size
    if values["use_fpn"]:
        values["feature_size"] = _pyramid(image_size[0], (8, 16, 32), 5)
    else:
        values["feature_size"] = _pyramid(image_size[0], (16, 32), 6)
        values["steps"] = tuple(math.ceil(image_size[0] / f) for f in values["feature_size"])
        kernel = head_kernel_size(source)
        if values["head_conv"] == "plain" and kernel is not None:
            values["head_kernel_size"] = kernel
    num_classes = class_count(source, values["num_default"])
    values["num_classes"] = num_classes
    if "classes" in user:
        if user["classes"] is None:
            raise ValueError(f"classes=null: a TensorFlow model's classes come from the file ({source.path} "
                             f"predicts {num_classes - 1}); list their names or leave classes out")
        if len(user["classes"]) != num_classes:
            raise ValueError(f"classes has {len(user['classes'])} names but {source.path} predicts "
                             f"{num_classes} columns (background and {num_classes - 1} classes)")
    else:
        values["classes"] = class_names(num_classes, read_label_map(label_map) if label_map else None)
    merged = {**cfg.to_dict(), **values, **user}
    provisional = config_from_dict(merged, source=f"{source.path} ({family})")
    if "num_ssd_boxes" not in user:
        merged["num_ssd_boxes"] = len(default_boxes(provisional))
    return config_from_dict(merged, source=f"{source.path} ({family})")


def tensorflow_to_ssdzoo(path: str | Path, model: nn.Module, cfg: "Config", *,
                         source: Optional[TFSource] = None) -> Conversion:
    """The TF file's weights as a complete state dict for ``model`` (built from
    ``tensorflow_config``'s config). BN's ``num_batches_tracked`` (TF has none) is 0."""
    source = source or read_tensorflow(path)
    own = model.state_dict()
    rules = family_rules(source.family, num_levels=len(cfg.feature_size),
                         num_backbone_levels=len(cfg.backbone_out_indices), depth=cfg.num_addition_layers)
    mapping = apply_rules(source.tensors, rules)
    where = f"{source.path} ({source.kind}, {source.family})"
    if cfg.anchor_centres != "tensorflow" or cfg.image_resize != "legacy":
        log.warning("%s: the config lacks TensorFlow's numerics (anchor_centres, image_resize, ...): the "
                    "model will not compute what TensorFlow does; ssdzoo.convert.tensorflow_config(cfg, "
                    "path) gives the config (ssdzoo's commands apply it by themselves)", source.path)
    hint = " (a TensorFlow file needs the config ssdzoo.convert.tensorflow_config derives from it)"
    if mapping.unmapped:
        raise ValueError(f"{where}: {len(mapping.unmapped)} weights fit no part of ssdzoo's model: "
                         + ", ".join(mapping.unmapped[:10]))
    state = {name: value for name, (_, value) in mapping.targets.items()}
    sources = {name: tf for name, (tf, _) in mapping.targets.items()}
    extra = sorted(set(state) - set(own))
    if extra:
        raise ValueError(f"{where}: {len(extra)} weights are for layers this model lacks: "
                         + ", ".join(f"{sources[k]} -> {k}" for k in extra[:10]) + hint)
    state.update(zero_bias_targets(own, state))
    return complete(own, state, sources, {**source.dropped, **mapping.dropped}, where=where, hint=hint)


def convert_tensorflow(path: str | Path, cfg: "Config", out: str | Path, model: nn.Module, *,
                       source: Optional[TFSource] = None) -> Conversion:
    """Write the TF file's weights as safetensors for ``model`` (built from ``cfg``, which
    ``tensorflow_config`` gave), and ``cfg`` beside it as ``OUT.yaml``: the recipe to load the
    weights with (``ssdzoo predict OUT.yaml --checkpoint OUT.safetensors``). Both files
    appear whole or not at all."""
    from ..config import save_config

    path, out = Path(path), Path(out)
    source = source or read_tensorflow(path)
    conversion = tensorflow_to_ssdzoo(path, model, cfg, source=source)
    log_dropped(str(path), conversion.dropped)
    save_safetensors(conversion.state, out, {"source": path.name, "kind": "ssd", "family": source.family,
                                             "backbone": cfg.backbone})
    save_config(cfg, out.with_suffix(".yaml"),
                header=f"ssdzoo recipe for {out.name}, converted from {path.name} ({source.family}, "
                       f"TensorFlow {source.kind}).\nLayers and numerics are TensorFlow's; the class "
                       f"names are {'placeholders: set classes' if cfg.classes[1].startswith('class_') else 'as read'}.")
    return conversion
