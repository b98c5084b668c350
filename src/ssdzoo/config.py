"""One typed config schema: the seed's YAML keys, validated.

A config file is flat YAML with the MindCV SSD example's key names (``image_size``,
``num_default``, ``min_scale``, ``prior_scaling``, ``lr_init`` ...) plus a few keys of
ssdzoo's own, each documented below. ``load_config`` reads it with ``yaml.safe_load``,
applies ``key=value`` overrides, checks every key and type, and returns a frozen
``Config``. An unknown key or a value of the wrong type is an error that names the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

COCO_CLASSES = (
    "background", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # the seed's order: column 0 is background, then COCO 2017's 80 classes by ascending id

# the recipes are package data (a wheel carries them); the root configs/ is a link to this folder
CONFIG_DIR = Path(str(resources.files("ssdzoo").joinpath("configs")))


class ConfigError(ValueError):
    """A config file or override that does not fit the schema. ``detail``: the message without
    its source (the file or override it names first)."""

    def __init__(self, message: str, detail: Optional[str] = None):
        super().__init__(message)
        self.detail = detail if detail is not None else message


@dataclasses.dataclass(frozen=True)
class Config:
    # --- data (seed keys) ---------------------------------------------------------------
    data_dir: str = ""  # a packed dataset (ssdzoo prepare) or a raw COCO root
    # class names, index 0 background; null: the training split's categories (its manifest)
    classes: Optional[tuple[str, ...]] = COCO_CLASSES
    num_classes: Optional[int] = 81  # including background; null: len(classes), or from the data
    # ssdzoo: the splits under data_dir (OUT/{split} of `ssdzoo prepare`) training and evaluation use
    train_split: str = "train2017"
    val_split: str = "val2017"
    image_size: tuple[int, int] = (300, 300)  # (height, width) of the network input
    batch_size: int = 32  # per device, as in the seed
    shuffle: bool = True
    drop_remainder: bool = True
    # data-loader worker processes per device; capped at the CPU cores this process may use
    # (shared by the processes of one node under torchrun)
    num_parallel_workers: int = 4
    # ssdzoo: normalization; None takes the backbone's timm pretrained_cfg (ImageNet for the seed)
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None
    # ssdzoo: how images are resized to image_size (training, evaluation, predict): antialias
    # (bilinear with antialiasing, PIL's filter) | bilinear (half-pixel centres, no antialiasing:
    # torchvision's detection transform) | legacy (TF1's and MindSpore's bilinear:
    # source pixel = destination * in / out, no half-pixel centres, no antialiasing; what TF OD
    # API models were trained with; JPEGs are decoded at full scale unless antialias)
    image_resize: str = "antialias"
    # ssdzoo: where images are decoded and augmented (training, evaluation, predict): workers
    # (the loader's processes, on the CPU) | device (the workers read bytes and draw the
    # augmentation, the training device decodes and augments whole batches; image_resize
    # antialias or bilinear) | auto (device on CUDA unless image_resize is legacy, else workers)
    data_backend: str = "auto"

    # --- model ---------------------------------------------------------------------------
    backbone: str = "mobilenetv2_100"  # any timm model name with feature maps
    # timm feature levels (indices into model.feature_info), not MindCV's block indices
    backbone_out_indices: tuple[int, ...] = (3, 4)
    # ssdzoo: take the last level after the backbone's own head conv (timm forward_features),
    # as the seed's MobileNetV2 does with its 1280-channel conv
    backbone_use_head: bool = False
    backbone_ckpt_path: Optional[str] = None  # local weights: timm state dict, safetensors, .ckpt
    # ssdzoo: the backbone's published ImageNet weights from timm (its Hugging Face hub cache; a
    # download unless HF_HUB_OFFLINE=1 and they are cached); ignored when a full model is loaded
    backbone_pretrained: bool = False
    backbone_kwargs: dict = dataclasses.field(default_factory=dict)  # ssdzoo: to timm.create_model
    # ssdzoo: timm module names (fnmatch globs) whose stride-2 convs / max-pools pad like
    # TensorFlow "same", as MindCV's backbone pads them (see model.layers.use_same_padding)
    backbone_same_padding: tuple[str, ...] = ()
    # ssdzoo: eps of every BatchNorm in the backbone; null keeps timm's (1e-5). TF-slim and the
    # TF OD API's Keras backbones use 1e-3
    backbone_bn_eps: Optional[float] = None
    # ssdzoo: ResNet v1 as TensorFlow/Keras/Caffe have it: each stage's first bottleneck strides
    # its first 1x1 conv instead of the 3x3 (timm's and torchvision's "v1.5"); same parameters
    resnet_stride_in_1x1: bool = False
    # ssdzoo: timm module names (fnmatch globs) of max-pools that round their output size up
    # (ceil_mode), as torchvision's SSD300 does with VGG-16's pool3 ("features.16": 75 -> 38)
    backbone_ceil_pools: tuple[str, ...] = ()
    # ssdzoo: momentum of every BatchNorm in the backbone, PyTorch convention; null keeps timm's
    # (0.1). torchvision's SSDLite: 0.03
    backbone_bn_momentum: Optional[float] = None
    # ssdzoo: MobileNetV3-Large's last stage at half width (timm's mobilenetv3_large_100 with
    # 80-channel blocks expanding to 480 and a 480-channel last conv): torchvision's reduced_tail
    # (reduce_divider 2), which its SSDLite is built with
    backbone_reduced_tail: bool = False
    # ssdzoo: the first backbone level is the expansion (1x1 conv + BN + activation) that opens the
    # stride-2 block after backbone_out_indices[0], and the block goes on from it: torchvision's
    # SSDLite takes its C4 map there (672 channels); false: the level's own output (the seed)
    backbone_expansion_level: bool = False
    ckpt_path: Optional[str] = None  # a trained ssdzoo checkpoint to evaluate or predict with
    use_fpn: bool = False  # ResNet recipe: FPN + bottom-up neck and the weight-shared head
    extras_in_channels: tuple[int, ...] = (256, 576, 1280, 512, 256, 256)
    extras_out_channels: tuple[int, ...] = (576, 1280, 512, 256, 256, 128)
    extras_strides: tuple[int, ...] = (1, 1, 2, 2, 2, 2)
    extras_ratio: tuple[float, ...] = (0.2, 0.2, 0.2, 0.25, 0.5, 0.25)
    num_addition_layers: int = 4  # conv layers of the weight-shared head
    cls_prior: float = 0.0  # ssdzoo: initial class probability (RetinaNet's 0.01); 0 = the seed's zero bias
    # ssdzoo: what the seed's layers do that PyTorch's defaults don't
    expand_act: str = "relu6"  # activation of the stride-16 expansion layer: relu6 | hardswish
    # ssdzoo: the extra layers' block: inverted_residual (the seed's and TF's ssdlite: 1x1, 3x3
    # depthwise, 1x1 + BN, ReLU6) | conv (TF's ssd_mobilenet_v2: 1x1 to out/2, then a full 3x3
    # conv to out, each with BN + ReLU6; extras_ratio unused) | vgg (the paper's SSD300 on VGG-16:
    # conv4_3 L2-normalized with a learned scale, pool5 3x3 stride 1, fc6 3x3 dilated 6, fc7 1x1,
    # then 1x1 to out/2 + ReLU and 3x3 + ReLU, padded at stride 2 and unpadded at stride 1;
    # biases, no BN)
    extras_block: str = "inverted_residual"
    # ssdzoo: the stride-16 map goes through the neck's 1x1 expansion (expand_act, the seed's);
    # false: the first level is the backbone's map as it is (torchvision's SSDLite, with
    # backbone_expansion_level). extras_block: vgg ignores it
    extras_expand: bool = True
    expand_bn_eps: float = 1e-3  # its BN eps (1e-5 in the MobileNetV3 recipe)
    expand_bn_momentum: float = 0.03  # its BN momentum, PyTorch convention (0.1 for MobileNetV3)
    bn_eps: float = 1e-3  # BN eps of the seed's own layers
    bn_momentum: float = 0.03  # PyTorch convention (MindSpore's 0.97)
    pad_mode: str = "same"  # stride-2 convs of neck: same (TensorFlow/MindSpore) | symmetric
    fpn_upsample: str = "mindspore"  # FPN resize: mindspore (legacy bilinear) | bilinear | nearest
    # ssdzoo: smooth the coarsest backbone level with a 3x3 conv too (the seed); TF's FPN passes
    # that level's lateral 1x1 projection on as it is (false)
    fpn_smooth_top: bool = True
    # ssdzoo: FPN smoothing and extra-level convs depthwise-separable (3x3 depthwise, then 1x1,
    # then BN + ReLU6: TF's FPNLite, use_depthwise); false: full 3x3 convs (the seed)
    fpn_separable: bool = False
    # ssdzoo: the FPN's top-down path carries each level's smoothed output down (TF2's Keras FPN);
    # false: the sum before smoothing (the seed, TF1's FPN)
    fpn_smoothed_top_down: bool = False
    # ssdzoo: the head's convs. Per-level head: separable (3x3 depthwise + BN + ReLU6, then a 1x1
    # conv: the seed's, TF's ssdlite) | plain (one head_kernel_size conv: TF's
    # convolutional_box_predictor). Weight-shared head: plain (3x3 convs: the seed's, TF's
    # RetinaNet) | separable (3x3 depthwise then 1x1: TF's FPNLite). null: the seed's choice
    head_conv: Optional[str] = None
    head_kernel_size: int = 1  # the plain per-level head's kernel (TF ssd_mobilenet_v2: 1)
    # ssdzoo: the weight-shared head's loc and cls predictors read one shared tower (TF's
    # share_prediction_tower, FPNLite) instead of one tower each (the seed)
    head_share_tower: bool = False

    # --- default boxes (seed keys) --------------------------------------------------------
    num_ssd_boxes: int = 1917
    feature_size: tuple[int, ...] = (19, 10, 5, 3, 2, 1)
    steps: tuple[int, ...] = (16, 32, 64, 100, 150, 300)
    num_default: tuple[int, ...] = (3, 6, 6, 6, 6, 6)
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[tuple[float, ...], ...] = ((), (2, 3), (2, 3), (2, 3), (2, 3), (2, 3))
    use_anchor_generator: bool = False  # grid anchors (ResNet50-FPN recipe)
    anchor_scale: float = 4.0  # ssdzoo: grid anchor base size in strides (seed constant)
    scales_per_octave: int = 2  # ssdzoo: grid anchor scales (seed constant)
    anchor_aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5)  # ssdzoo: grid anchors (seed constant)
    prior_scaling: tuple[float, float] = (0.1, 0.2)  # offsets / (0.1, 0.2): Caffe SSD variances
    # ssdzoo: where anchors sit. seed: SSD boxes of level k at (j + 0.5) * steps[k] / image_size,
    # grid anchors at steps[k] * (j + 0.5). tensorflow (TF OD API): SSD boxes at (j + 0.5) / f_k
    # on the f_k x f_k map; grid anchors at steps[k] * (j + 0.5) where steps[k] divides the image
    # size, else at steps[k] * j (TF's multiscale anchor offset rule)
    anchor_centres: str = "seed"
    # ssdzoo: SSD default boxes of every level but a reduced lowest one (aspect_ratios [] there)
    # take exactly these width/height ratios in this order, then the square s'_k (TF's
    # ssd_anchor_generator aspect_ratios, e.g. [1.0, 2.0, 0.5, 3.0, 0.3333]); null: the square
    # s_k, then r and 1/r for each r of aspect_ratios, then s'_k (the seed)
    explicit_aspect_ratios: Optional[tuple[float, ...]] = None
    # ssdzoo: the scales s_0 .. s_levels of SSD default boxes as a list of levels + 1 values
    # (torchvision's DefaultBoxGenerator scales, e.g. SSD300's 0.07, 0.15, ..., 1.05); null: the
    # paper's min_scale to max_scale, then 1.0
    anchor_scales: Optional[tuple[float, ...]] = None
    # ssdzoo: box order at each place: seed (s_k, then r and 1/r for each ratio, then s'_k) |
    # torchvision (s_k, s'_k, then r and 1/r for each ratio: DefaultBoxGenerator's)
    anchor_order: str = "seed"
    # ssdzoo: clip each default box's width and height to [0, 1] (DefaultBoxGenerator's clip)
    anchor_clip: bool = False

    # --- matching, loss, post-processing (seed keys) --------------------------------------
    match_threshold: float = 0.5
    # ssdzoo: seed (an anchor is positive with IoU > match_threshold; a ground truth's best
    # anchor goes to the first ground truth that has it as its best) | paper (IoU >=
    # match_threshold, the later ground truth wins a shared best anchor: the SSD paper's
    # matching as torchvision's SSDMatcher does it)
    matching: str = "seed"
    # ssdzoo: focal (the seed's sigmoid focal loss on every anchor) | multibox (the paper's
    # softmax cross-entropy on the positives and the hardest neg_pos_ratio x as many negatives
    # per image; torchvision's SSD.compute_loss); both add smooth L1 on the positives
    loss: str = "focal"
    neg_pos_ratio: float = 3.0  # ssdzoo: multibox's negatives per positive (the paper's 3:1)
    # ssdzoo: decoded dw, dh (after prior_scaling) are clamped at most this before exp;
    # torchvision's BoxCoder: log(1000 / 16) = 4.135166556742356. null: not clamped (the seed)
    decode_max_log_scale: Optional[float] = None
    gamma: float = 2.0  # focal loss modulating exponent
    alpha: float = 0.75  # focal loss weight of the target column
    nms_threshold: float = 0.6
    min_score: float = 0.1
    max_boxes: int = 100  # per class, as in the seed
    # ssdzoo: NMS measures pixel boxes as x2 - x1 + 1 wide (the seed's Pascal VOC convention);
    # false: x2 - x1 (TensorFlow, torchvision)
    nms_plus_one: bool = True
    # ssdzoo: class scores from the logits: sigmoid (each class alone: the seed's) | softmax (over
    # all classes, background in column 0: the SSD paper's and torchvision's)
    score_activation: str = "sigmoid"
    # ssdzoo: per image and class, only the best this many candidates over min_score go to NMS
    # (torchvision's topk_candidates); null: all of them (the seed)
    pre_nms_top_k: Optional[int] = None
    # ssdzoo: per image, the best this many detections of all classes after NMS, by score
    # (torchvision's detections_per_img); null: no cap beyond max_boxes per class (the seed)
    max_detections: Optional[int] = None
    # ssdzoo: clip decoded boxes to the image before NMS (torchvision clips; the seed's decode
    # clips to the unit square already, so this changes nothing there); false: as decoded
    clip_boxes: bool = False

    # --- training (seed keys) --------------------------------------------------------------
    epoch_size: int = 500
    lr: float = 0.05
    lr_init: float = 0.001
    lr_end_rate: float = 0.001
    warmup_epochs: float = 2
    momentum: float = 0.9
    weight_decay: float = 1.5e-4
    loss_scale: float = 1024.0  # static loss scale for fp16 (grads are divided by it)
    # O0: fp32; O1, O2, O3: autocast on GPUs (bf16, else fp16 with the loss scale). PyTorch's
    # autocast keeps BN and reductions in fp32 at every level, so O1-O3 train alike
    amp_level: str = "O2"
    ckpt_save_dir: str = "./ckpt"
    # per-epoch checkpoints (epoch_0001.pt ...) kept besides last.pt and best.pt, oldest removed
    # first; 0 keeps none
    keep_checkpoint_max: int = 20
    eval_while_train: bool = False
    eval_start_epoch: int = 350
    eval_interval: int = 1
    # ssdzoo
    optimizer: str = "momentum"  # momentum (the seed's SGD; no decay on BN, as MindSpore) | adamw
    grad_clip: float = 0.0  # max global gradient norm; 0 = off (the seed doesn't clip)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    sync_bn: bool = False  # BN statistics over all devices (CUDA DDP only); the seed's BN is per device
    freeze_bn: bool = False  # keep every BN in eval mode while training (running statistics fixed)
    channels_last: bool = False  # NHWC memory format (faster convs on recent GPUs)
    compile: bool = False  # torch.compile the model for training
    log_interval: int = 20  # steps between TensorBoard scalars and, off a terminal, progress lines
    # mid-epoch checkpoints (last.pt), for a run killed without warning: every N steps and/or
    # every M minutes; 0 = off. SIGTERM and Ctrl-C always save at the step they arrive
    save_checkpoint_steps: int = 0
    save_checkpoint_minutes: float = 30.0
    # share of an epoch's training images that may fail to decode (each skipped, logged by file
    # name and counted) before training stops with an error; 0 stops at the first
    max_unreadable_share: float = 0.01

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes`` applied and validated."""
        return _validated(dataclasses.replace(self, **changes))

    def to_dict(self) -> dict:
        """Plain YAML-able values (tuples become lists), in schema order."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @property
    def classes_from_data(self) -> bool:
        """classes is null: the training split's categories decide (``ssdzoo.data.resolve_classes``)."""
        return self.classes is None


# keys that decide the network's tensors and layers (model.build_model): a checkpoint fits a
# config only where these agree. Not here: what only initializes (backbone_pretrained,
# backbone_ckpt_path, cls_prior) or trains (bn_momentum, expand_bn_momentum) it
MODEL_KEYS = (
    "backbone", "backbone_out_indices", "backbone_use_head", "backbone_kwargs", "backbone_same_padding",
    "backbone_bn_eps", "resnet_stride_in_1x1", "backbone_ceil_pools", "backbone_reduced_tail",
    "backbone_expansion_level", "extras_expand", "use_fpn", "fpn_upsample", "fpn_smooth_top", "fpn_separable",
    "fpn_smoothed_top_down", "extras_block", "extras_in_channels", "extras_out_channels", "extras_strides",
    "extras_ratio", "expand_act", "expand_bn_eps", "pad_mode", "bn_eps", "head_conv", "head_kernel_size",
    "head_share_tower", "num_addition_layers", "num_classes", "num_default", "feature_size",
)


def describe_model(cfg: Config) -> str:
    """One line naming what a config builds: backbone, neck, input size, classes."""
    neck = "FPN" if cfg.use_fpn else "SSD extras"
    if cfg.classes is None:
        classes = "classes from the data"
    else:
        names = list(cfg.classes[1:])
        shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
        classes = f"{len(names)} classes ({shown})"
    return f"{cfg.backbone} + {neck}, {cfg.image_size[0]}x{cfg.image_size[1]}, {classes}"


CHOICES = {
    "image_resize": ("antialias", "bilinear", "legacy"),
    "data_backend": ("auto", "workers", "device"),
    "anchor_order": ("seed", "torchvision"),
    "matching": ("seed", "paper"),
    "loss": ("focal", "multibox"),
    "extras_block": ("inverted_residual", "conv", "vgg"),
    "head_conv": (None, "separable", "plain"),
    "anchor_centres": ("seed", "tensorflow"),
    "expand_act": ("relu6", "hardswish"),
    "pad_mode": ("same", "symmetric"),
    "fpn_upsample": ("mindspore", "bilinear", "nearest"),
    "amp_level": ("O0", "O1", "O2", "O3"),
    "optimizer": ("momentum", "adamw"),
    "score_activation": ("sigmoid", "softmax"),
}
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML recipe, apply ``key=value`` overrides, validate, resolve defaults.

    ``path`` may also name a recipe in the project's configs/ folder without its suffix
    (``"ssd_mobilenetv2"``). Override values are parsed as YAML (``lr=0.01``,
    ``image_size=[128,128]``, ``backbone_ckpt_path=null``).
    """
    path = resolve_config_path(path)
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(raw).__name__}")
    overrides = list(overrides)
    merged = apply_overrides(raw, parse_overrides(overrides))
    try:
        return config_from_dict(merged, source=str(path))
    except ConfigError as err:
        raise _blame_overrides(err, raw, overrides, str(path)) from None


def apply_overrides(raw: dict, given: dict[str, Any]) -> dict:
    """``raw`` with the parsed overrides ``given`` on top. One rule for every command and for
    ``load_config``: overrides that give ``classes`` but not ``num_classes`` set the class count
    too (num_classes follows classes; ``classes=null`` leaves both to the data)."""
    merged = {**raw, **given}
    if "classes" in given and "num_classes" not in given:
        merged["num_classes"] = None
    return merged


def _blame_overrides(err: ConfigError, raw: dict, overrides: list[str], source: str) -> ConfigError:
    """``err`` (from the file with ``overrides`` applied) naming the override that causes it
    when the file alone is valid: the one that fails on its own, else all of them."""
    if not overrides:
        return err
    try:
        config_from_dict(raw, source=source)
    except ConfigError:
        return err  # the file itself is inconsistent: its name is the right source
    culprits = []
    for item in overrides:
        try:
            config_from_dict(apply_overrides(raw, parse_overrides([item])), source=source)
        except ConfigError:
            culprits.append(item)
    named = culprits[:1] or overrides
    what = f"override {named[0]!r}" if len(named) == 1 else "overrides " + " ".join(map(repr, named))
    return ConfigError(f"{what} (on {source}): {err.detail}", err.detail)


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``key=value`` items as {key: value}, each value parsed as YAML."""
    parsed = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key, source = key.strip(), f"override {item!r}"
        if not sep or not key:
            raise ConfigError(f"{source}: expected key=value")
        if key not in _FIELDS:
            raise ConfigError(f"{source}: unknown key {key!r}{_did_you_mean(key, _FIELDS)}")
        value = yaml.safe_load(text) if text.strip() else None
        parsed[key] = _coerce(value, _HINTS[key], key, source)  # a bad value names the override
    return parsed


def save_config(cfg: Config, path: str | Path, *, header: str = "") -> Path:
    """Write ``cfg`` as a complete YAML recipe (every key, schema order) that ``load_config``
    reads back as the same config; ``header`` lines become comments. Atomic."""
    from .atomic import write_bytes

    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    text = comments + yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None, width=100)
    return write_bytes(path, text.encode("utf-8"))


def resolve_config_path(path: str | Path) -> Path:
    """``path`` itself, or ``configs/{path}.yaml`` for a bare recipe name."""
    path = Path(path)
    if path.exists():
        return path
    named = CONFIG_DIR / f"{path.name}.yaml"
    if path.suffix == "" and len(path.parts) == 1:
        if named.exists():
            return named
        recipes = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"config {str(path)!r} not found: no such file, and the recipes in "
                          f"{CONFIG_DIR} are {', '.join(recipes)}{_did_you_mean(path.name, recipes)}")
    raise ConfigError(f"config file not found: {path}")


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` (several if equally close), or ''."""
    ratios = {c: difflib.SequenceMatcher(None, word, c).ratio() for c in choices}
    best = max(ratios.values(), default=0.0)
    close = [c for c, r in sorted(ratios.items(), key=lambda cr: -cr[1]) if r >= max(0.6, best - 0.02)]
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def config_from_dict(raw: dict, source: str = "config") -> Config:
    """Build a validated ``Config`` from plain values (e.g. a checkpoint's saved config)."""
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) "
                          + ", ".join(f"{key!r}{_did_you_mean(key, _FIELDS)}" for key in unknown))
    values = {key: _coerce(value, _HINTS[key], key, source) for key, value in raw.items()}
    return _validated(Config(**values), source)


def _validated(cfg: Config, source: str = "config") -> Config:
    def fail(msg: str) -> None:
        raise ConfigError(f"{source}: {msg}", msg)

    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            fail(f"{key} must be one of {allowed}, got {getattr(cfg, key)!r}")
    if cfg.data_backend == "device" and cfg.image_resize == "legacy":
        fail("data_backend device resizes with image_resize antialias or bilinear; image_resize legacy "
             "needs data_backend workers (or auto)")
    if cfg.classes is not None:
        if cfg.num_classes is None:
            cfg = dataclasses.replace(cfg, num_classes=len(cfg.classes))
        if len(cfg.classes) != cfg.num_classes:
            fail(f"classes has {len(cfg.classes)} names but num_classes is {cfg.num_classes}")
        if len(set(cfg.classes)) != len(cfg.classes):
            fail("classes names a class twice")
    if cfg.num_classes is not None and cfg.num_classes < 2:
        fail(f"num_classes must be at least 2 (background and one class), got {cfg.num_classes}")
    if cfg.backbone_pretrained and cfg.backbone_ckpt_path:
        fail("backbone_pretrained and backbone_ckpt_path both give backbone weights: set one")
    for key in ("train_split", "val_split"):
        if not getattr(cfg, key) or "/" in getattr(cfg, key):
            fail(f"{key} must be a split folder name, got {getattr(cfg, key)!r}")
    levels = len(cfg.feature_size)
    for key in ("steps", "num_default"):
        if len(getattr(cfg, key)) != levels:
            fail(f"{key} has {len(getattr(cfg, key))} entries, feature_size has {levels}")
    if not cfg.use_anchor_generator:
        if len(cfg.aspect_ratios) < levels:
            fail(f"aspect_ratios has {len(cfg.aspect_ratios)} entries, feature_size has {levels}")
        if cfg.image_size[0] != cfg.image_size[1]:
            fail(f"SSD default boxes need a square image_size, got {list(cfg.image_size)}")
    for key in ("image_size", "feature_size", "steps", "num_default"):
        if any(v <= 0 for v in getattr(cfg, key)):
            fail(f"{key} must be positive, got {list(getattr(cfg, key))}")
    if cfg.use_anchor_generator:  # grid anchors: one map per step, ceil(size / step) a side
        maps = [(math.ceil(cfg.image_size[0] / s), math.ceil(cfg.image_size[1] / s)) for s in cfg.steps]
        sizes = [h for h, _ in maps]
        if list(cfg.feature_size) != sizes:
            boxes = sum(h * w * b for (h, w), b in zip(maps, cfg.num_default))
            fail(f"image_size {list(cfg.image_size)} at steps {list(cfg.steps)} gives feature maps of {sizes} "
                 f"and {boxes} default boxes, but feature_size is {list(cfg.feature_size)} and num_ssd_boxes "
                 f"{cfg.num_ssd_boxes}: set both (feature_size=[{','.join(map(str, sizes))}] "
                 f"num_ssd_boxes={boxes})")
    for key in ("batch_size", "epoch_size", "max_boxes", "log_interval", "eval_interval"):
        if getattr(cfg, key) <= 0:
            fail(f"{key} must be positive, got {getattr(cfg, key)}")
    for key in ("num_parallel_workers", "keep_checkpoint_max", "save_checkpoint_steps", "save_checkpoint_minutes"):
        if getattr(cfg, key) < 0:
            fail(f"{key} must be 0 or more, got {getattr(cfg, key)}")
    for key in ("pre_nms_top_k", "max_detections"):
        if getattr(cfg, key) is not None and getattr(cfg, key) <= 0:
            fail(f"{key} must be positive or null, got {getattr(cfg, key)}")
    if not 0.0 <= cfg.max_unreadable_share <= 1.0:
        fail(f"max_unreadable_share must be in [0, 1], got {cfg.max_unreadable_share}")
    if cfg.explicit_aspect_ratios is not None and any(r <= 0 for r in cfg.explicit_aspect_ratios):
        fail(f"explicit_aspect_ratios must be positive, got {list(cfg.explicit_aspect_ratios)}")
    if cfg.backbone_bn_eps is not None and cfg.backbone_bn_eps <= 0:
        fail(f"backbone_bn_eps must be positive, got {cfg.backbone_bn_eps}")
    if cfg.anchor_scales is not None:
        if len(cfg.anchor_scales) != levels + 1:
            fail(f"anchor_scales needs {levels + 1} values (one per level and one past the last), "
                 f"got {len(cfg.anchor_scales)}")
        if any(s <= 0 for s in cfg.anchor_scales):
            fail(f"anchor_scales must be positive, got {list(cfg.anchor_scales)}")
    if cfg.neg_pos_ratio <= 0:
        fail(f"neg_pos_ratio must be positive, got {cfg.neg_pos_ratio}")
    if cfg.decode_max_log_scale is not None and cfg.decode_max_log_scale <= 0:
        fail(f"decode_max_log_scale must be positive or null, got {cfg.decode_max_log_scale}")
    if cfg.head_kernel_size <= 0 or cfg.head_kernel_size % 2 == 0:
        fail(f"head_kernel_size must be a positive odd number, got {cfg.head_kernel_size}")
    if not 0.0 <= cfg.cls_prior < 1.0:
        fail(f"cls_prior must be in [0, 1), got {cfg.cls_prior}")
    for key in ("match_threshold", "nms_threshold", "min_score"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            fail(f"{key} must be in [0, 1], got {getattr(cfg, key)}")
    if cfg.mean is None or cfg.std is None:
        mean, std = _backbone_normalization(cfg.backbone)
        cfg = dataclasses.replace(cfg, mean=cfg.mean or mean, std=cfg.std or std)
    return cfg


def _backbone_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std from timm's pretrained_cfg for ``name`` (ImageNet's if it has none)."""
    import timm

    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    try:
        pretrained = timm.models.get_pretrained_cfg(name)
    except Exception:  # an unknown name fails later, in build_model, with timm's own message
        return imagenet
    if pretrained is None:
        return imagenet
    return tuple(pretrained.mean), tuple(pretrained.std)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check ``value`` against the type ``hint`` of ``key``; lists become tuples."""

    def fail() -> None:
        raise ConfigError(f"{source}: key {key!r} expects {_describe(hint)}, got {value!r}")

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, source)
    if hint is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail()
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            fail()
        return value
    if hint is dict:
        if not isinstance(value, dict):
            fail()
        return dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            fail()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key, source) for v in value)
        if len(value) != len(args):
            fail()
        return tuple(_coerce(v, a, key, source) for v, a in zip(value, args))
    raise TypeError(f"unsupported type in schema for {key}: {hint}")


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            dict: "a mapping"}.get(hint, str(hint))


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
