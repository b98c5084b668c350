"""MobileNetV3-Large with torchvision's reduced tail, from timm's parts.

torchvision builds its SSDLite on ``mobilenet_v3_large(reduced_tail=True)``: the last stage
(three 5x5 blocks at stride 32) and the last 1x1 conv run at half width (reduce_divider 2):
80 channels expanding to 480 instead of 160 to 960, and a 480-channel last conv. timm has no
such variant and ``timm.create_model`` cannot take another block list for a registered name, so
this builds timm's own ``MobileNetV3`` class from timm's arch-string decoder with the tail
changed; every other setting is that of timm's ``mobilenetv3_large_100``, so parameter names
(``blocks.5.0.conv_pw`` ...) stay timm's.
"""

from __future__ import annotations

from functools import partial

import timm
from torch import nn
from timm.layers import get_act_layer
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models._efficientnet_builder import decode_arch_def, round_channels
from timm.models.mobilenetv3 import MobileNetV3

# timm's mobilenetv3_large_100 stages, the last two at torchvision's reduced width
_REDUCED_TAIL_ARCH = [
    ["ds_r1_k3_s1_e1_c16_nre"],
    ["ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"],
    ["ir_r3_k5_s2_e3_c40_se0.25_nre"],
    ["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"],
    ["ir_r2_k3_s1_e6_c112_se0.25"],
    ["ir_r3_k5_s2_e6_c80_se0.25"],  # 160 // 2 out; the first expands 112 -> 672, the others 80 -> 480
    ["cn_r1_k1_s1_c480"],  # 960 // 2
]
SUPPORTED = ("mobilenetv3_large_100",)


def mobilenetv3_large_reduced_tail(name: str, **timm_kwargs) -> nn.Module:
    """timm's ``name`` (only ``mobilenetv3_large_100``) with the reduced tail, no classifier,
    random weights (timm publishes none for this shape)."""
    if name not in SUPPORTED:
        raise ValueError(f"backbone_reduced_tail applies to {', '.join(SUPPORTED)}, not {name!r}")
    se_layer = partial(SqueezeExcite, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU,
                       rd_round_fn=round_channels)
    model = MobileNetV3(block_args=decode_arch_def(_REDUCED_TAIL_ARCH), num_classes=0, num_features=1280,
                        stem_size=16, round_chs_fn=partial(round_channels, multiplier=1.0),
                        norm_layer=nn.BatchNorm2d, act_layer=get_act_layer("hard_swish"), se_layer=se_layer,
                        **timm_kwargs)
    pretrained = timm.models.get_pretrained_cfg(name)
    model.pretrained_cfg = {"mean": tuple(pretrained.mean), "std": tuple(pretrained.std)}
    return model
