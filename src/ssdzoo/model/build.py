"""build_model(cfg): the only place where a config becomes modules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..anchors import default_boxes
from ..weights import load_backbone_weights, load_model_weights
from .backbone import TimmBackbone
from .detector import Detector
from .heads import SharedHead, SSDHead, set_prior_probability
from .layers import init_new_layers
from .necks import FPN, SSDExtras, VGGExtras

if TYPE_CHECKING:
    from ..config import Config


def build_model(cfg: "Config", weights: Optional[str | Path] = None, *, init_backbone: bool = True) -> Detector:
    """The detector described by ``cfg``, checked against the config's anchor layout.

    Weights: ``cfg.backbone_ckpt_path`` (a timm state dict, safetensors or MindCV .ckpt) or
    ``cfg.backbone_pretrained`` (timm's published weights, the only download, and only when
    asked) fill the backbone; ``weights`` (an ssdzoo checkpoint, safetensors file, the seed's
    MindSpore .ckpt, or a TensorFlow OD API graph or checkpoint: then ``cfg`` should be
    ``ssdzoo.convert.tensorflow_config``'s, for TF's numerics) fills the whole model, and then
    the backbone's own weights are not read (nor with ``init_backbone=False``, for a caller
    that fills the model itself).
    """
    if cfg.num_classes is None or cfg.classes is None:
        raise ValueError("classes is null (from the data): resolve it first (ssdzoo.data.resolve_classes(cfg), "
                         "as train does), or list the classes in the config")
    init_backbone = init_backbone and not weights
    backbone = TimmBackbone(cfg.backbone, cfg.backbone_out_indices, use_head=cfg.backbone_use_head,
                            pretrained=init_backbone and cfg.backbone_pretrained,
                            reduced_tail=cfg.backbone_reduced_tail, expansion_level=cfg.backbone_expansion_level,
                            **cfg.backbone_kwargs)
    backbone.adapt(same_padding=cfg.backbone_same_padding, bn_eps=cfg.backbone_bn_eps,
                   stride_in_1x1=cfg.resnet_stride_in_1x1, ceil_pools=cfg.backbone_ceil_pools,
                   bn_momentum=cfg.backbone_bn_momentum)
    num_levels = len(cfg.feature_size)
    norm = dict(eps=cfg.bn_eps, momentum=cfg.bn_momentum)
    if cfg.use_fpn:
        neck = FPN(backbone.channels, channels=cfg.extras_out_channels[0],
                   extra_levels=num_levels - len(backbone.channels), upsample_mode=cfg.fpn_upsample,
                   pad_mode=cfg.pad_mode, smooth_top=cfg.fpn_smooth_top, separable=cfg.fpn_separable,
                   smoothed_top_down=cfg.fpn_smoothed_top_down, **norm)
        if len(set(cfg.num_default)) != 1:
            raise ValueError(f"the weight-shared head needs one num_default for all levels, "
                             f"got {list(cfg.num_default)}")
        head = SharedHead(neck.out_channels[0], num_levels, cfg.num_default[0], cfg.num_classes,
                          depth=cfg.num_addition_layers, separable=cfg.head_conv == "separable",
                          share_tower=cfg.head_share_tower, **norm)
    elif cfg.extras_block == "vgg":
        neck = VGGExtras(backbone.channels, in_channels=cfg.extras_in_channels,
                         out_channels=cfg.extras_out_channels, strides=cfg.extras_strides)
    else:
        neck = SSDExtras(backbone.channels, in_channels=cfg.extras_in_channels,
                         out_channels=cfg.extras_out_channels, strides=cfg.extras_strides,
                         ratios=cfg.extras_ratio, expand_act=cfg.expand_act,
                         expand_eps=cfg.expand_bn_eps, expand_momentum=cfg.expand_bn_momentum,
                         pad_mode=cfg.pad_mode, block=cfg.extras_block, expand=cfg.extras_expand, **norm)
    if not cfg.use_fpn:
        head = SSDHead(neck.out_channels, cfg.num_default, cfg.num_classes,
                       separable=cfg.head_conv != "plain", kernel_size=cfg.head_kernel_size, **norm)
    if len(neck.out_channels) != num_levels:
        raise ValueError(f"the neck gives {len(neck.out_channels)} levels but feature_size lists "
                         f"{num_levels}")
    init_new_layers(neck)
    init_new_layers(head)
    if cfg.cls_prior > 0:
        set_prior_probability(head.cls_convs(), cfg.num_classes, cfg.cls_prior)
    check_anchor_layout(cfg, feature_sizes(cfg, backbone.strides))

    model = Detector(backbone, neck, head)
    if cfg.backbone_ckpt_path and init_backbone:
        load_backbone_weights(model, cfg.backbone_ckpt_path, cfg)
    if weights:
        load_model_weights(model, weights, cfg)
    return model


def feature_sizes(cfg: "Config", backbone_strides: list[int]) -> list[tuple[int, int]]:
    """(height, width) of every pyramid level: backbone levels at ceil(size / stride), each
    extra level a stride-2 conv of the previous (ceil(size / 2)); the VGG neck's unpadded
    stride-1 levels are 2 smaller than the previous. No forward pass needed."""
    height, width = cfg.image_size
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in backbone_strides]
    while len(sizes) < len(cfg.feature_size):
        h, w = sizes[-1]
        if cfg.extras_block == "vgg" and not cfg.use_fpn and cfg.extras_strides[len(sizes)] == 1:
            sizes.append((h - 2, w - 2))
        else:
            sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


def check_anchor_layout(cfg: "Config", sizes: list[tuple[int, int]]) -> None:
    """The config's feature_size and num_ssd_boxes must be what the model and anchors give."""
    if not cfg.use_anchor_generator:
        expected = [h for h, _ in sizes]
    predicted = sum(h * w * b for (h, w), b in zip(sizes, cfg.num_default))
    if not cfg.use_anchor_generator:
        if list(cfg.feature_size) != expected:  # image_size changed alone: both anchor keys follow it
            raise ValueError(f"{cfg.backbone} at image_size {list(cfg.image_size)} gives feature maps of "
                             f"{expected} and {predicted} default boxes, but feature_size is "
                             f"{list(cfg.feature_size)} and num_ssd_boxes {cfg.num_ssd_boxes}: set both "
                             f"(feature_size=[{','.join(map(str, expected))}] num_ssd_boxes={predicted})")
    anchors = len(default_boxes(cfg))
    if predicted != anchors:
        raise ValueError(f"the model predicts {predicted} boxes but the anchor settings give {anchors}")
    if cfg.num_ssd_boxes != anchors:
        raise ValueError(f"num_ssd_boxes is {cfg.num_ssd_boxes} but the config's default boxes "
                         f"number {anchors}")
