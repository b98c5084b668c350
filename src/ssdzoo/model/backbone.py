"""Any timm model as a multi-scale feature extractor.

The backbone is timm's own classification model with its classifier removed; its feature maps
come from timm's ``forward_intermediates`` API, so its parameter names stay those of timm's
checkpoints. Channels and strides come from ``feature_info``: no dummy forward pass.
"""

from __future__ import annotations

import fnmatch

import timm
from torch import Tensor, nn

from .layers import use_same_padding
from .mobilenetv3_tail import mobilenetv3_large_reduced_tail


class TimmBackbone(nn.Module):
    """Feature maps at ``out_indices`` (indices into ``feature_info``).

    With ``use_head`` the last map is taken after the model's own head conv (timm's
    ``forward_features`` output), as the seed's MobileNetV2 takes its 1280-channel conv.
    ``pretrained`` asks timm for the published weights (see ``create_timm_model``).
    ``reduced_tail``: MobileNetV3-Large with torchvision's half-width last stage
    (``mobilenetv3_tail``); ``expansion_level``: the first level is the expansion that opens
    the next stage's first block (``expansion_split``), as torchvision's SSDLite takes it.
    """

    def __init__(self, name: str, out_indices: tuple[int, ...], *, use_head: bool = False,
                 pretrained: bool = False, reduced_tail: bool = False, expansion_level: bool = False,
                 **timm_kwargs):
        super().__init__()
        if reduced_tail:
            if pretrained:
                raise ValueError("backbone_pretrained: timm publishes no weights for MobileNetV3's reduced "
                                 "tail (backbone_reduced_tail); set one of them false")
            model = mobilenetv3_large_reduced_tail(name, **timm_kwargs)
        else:
            model = create_timm_model(name, pretrained=pretrained, **timm_kwargs)
        if not hasattr(model, "forward_intermediates"):
            raise ValueError(f"timm model {name!r} has no forward_intermediates(); "
                             "choose a backbone that returns feature maps")
        num_levels = len(model.feature_info)
        if any(not 0 <= i < num_levels for i in out_indices):
            raise ValueError(f"backbone_out_indices {list(out_indices)} out of range for {name!r}, "
                             f"which has {num_levels} feature levels "
                             f"(strides {[f['reduction'] for f in model.feature_info]})")
        info = [model.feature_info[i] for i in out_indices]
        self.channels = [f["num_chs"] for f in info]
        self.strides = [f["reduction"] for f in info]
        if use_head:
            self.channels[-1] = model.num_features
        # drop what no requested level needs (trailing blocks, the classifier's head conv)
        model.prune_intermediate_layers(list(out_indices), prune_head=not use_head)
        self.model = model
        self.out_indices = list(out_indices)
        self.use_head = use_head
        self.mean = tuple(model.pretrained_cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(model.pretrained_cfg.get("std", (0.229, 0.224, 0.225)))
        self.split_stage = None
        if expansion_level:
            self.split_stage = expansion_split(model, self.out_indices, use_head=use_head)
            self.channels[0] = model.blocks[self.split_stage][0].conv_pw.out_channels

    def adapt(self, *, same_padding: tuple[str, ...] = (), bn_eps: float | None = None,
              stride_in_1x1: bool = False, ceil_pools: tuple[str, ...] = (),
              bn_momentum: float | None = None) -> None:
        """Numerics of other frameworks' versions of this network, in place; parameter names
        and shapes stay timm's. ``same_padding``: module-name globs whose strided convs and
        pools pad like TensorFlow "same"; ``bn_eps``, ``bn_momentum``: every BatchNorm's;
        ``stride_in_1x1``: ResNet v1's stride in each stage's first 1x1 conv
        (``move_stride_to_1x1``); ``ceil_pools``: globs of max-pools that round their output
        size up (torchvision's SSD300 pool3)."""
        use_same_padding(self.model, same_padding)
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if bn_eps is not None:
                    module.eps = bn_eps
                if bn_momentum is not None:
                    module.momentum = bn_momentum
        if stride_in_1x1:
            move_stride_to_1x1(self.model)
        for pattern in ceil_pools:
            pools = [m for name, m in self.model.named_modules()
                     if fnmatch.fnmatchcase(name, pattern) and isinstance(m, nn.MaxPool2d)]
            if not pools:
                raise ValueError(f"backbone_ceil_pools: {pattern!r} matches no max-pool of {type(self.model).__name__}")
            for pool in pools:
                pool.ceil_mode = True

    def forward(self, images: Tensor) -> list[Tensor]:
        if self.split_stage is not None:
            return self._forward_expansion(images)
        if not self.use_head:
            return self.model.forward_intermediates(images, indices=self.out_indices,
                                                    intermediates_only=True)
        final, maps = self.model.forward_intermediates(images, indices=self.out_indices)
        return maps[:-1] + [final]

    def _forward_expansion(self, images: Tensor) -> list[Tensor]:
        """[the expansion (1x1 conv + BN + act) of stage ``split_stage``'s first block, the last
        level]: the block goes on from the expansion, so nothing runs twice."""
        m = self.model
        x = m.bn1(m.conv_stem(images))
        for stage in m.blocks[:self.split_stage]:
            x = stage(x)
        first = m.blocks[self.split_stage][0]
        expansion = first.bn1(first.conv_pw(x))
        x = first.bn3(first.conv_pwl(first.se(first.aa(first.bn2(first.conv_dw(expansion))))))
        x = m.blocks[self.split_stage][1:](x)
        for stage in m.blocks[self.split_stage + 1:m.stage_ends[self.out_indices[1]]]:
            x = stage(x)
        return [expansion, x]


def create_timm_model(name: str, *, pretrained: bool = False, **timm_kwargs) -> nn.Module:
    """timm's ``name`` without its classifier. ``pretrained`` loads timm's published weights:
    from the Hugging Face hub cache (a download, unless ``HF_HUB_OFFLINE=1``), or from a local
    file with ``pretrained_cfg_overlay={"file": ...}`` in ``timm_kwargs``; a failure is one
    clear error."""
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=0, **timm_kwargs)
    if not timm.is_model(name):
        raise ValueError(f"backbone {name!r} is not a timm model")
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, **timm_kwargs)
    except Exception as err:  # hub, network, cache and file errors all land here
        import os

        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        where = ("HF_HUB_OFFLINE is set, so only an already cached copy can be used" if offline else
                 "they are downloaded from the Hugging Face hub once, then read from its cache")
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"backbone_pretrained: timm could not load the published weights of {name!r} "
                         f"({type(err).__name__}: {text}); {where}. Set backbone_ckpt_path to a local "
                         "weights file instead, or backbone_pretrained: false") from err


def move_stride_to_1x1(model: nn.Module) -> list[str]:
    """Give each strided bottleneck of a timm ResNet its stride in the first 1x1 conv (conv1)
    instead of the 3x3 (conv2), in place: ResNet v1 as He et al. 2015, Caffe, TensorFlow and
    Keras have it (timm's and torchvision's is "v1.5"). Returns the changed blocks' names."""
    changed = []
    for name, block in model.named_modules():
        conv1, conv2 = getattr(block, "conv1", None), getattr(block, "conv2", None)
        if (isinstance(conv1, nn.Conv2d) and isinstance(conv2, nn.Conv2d) and conv1.kernel_size == (1, 1)
                and getattr(block, "conv3", None) is not None and max(conv2.stride) > 1):
            conv1.stride, conv2.stride = conv2.stride, (1, 1)
            changed.append(name)
    if not changed:
        raise ValueError(f"resnet_stride_in_1x1: {type(model).__name__} has no strided bottleneck "
                         "(conv1 1x1, strided conv2, conv3) to change")
    return changed


def expansion_split(model: nn.Module, out_indices: list[int], *, use_head: bool) -> int:
    """The stage (index into ``model.blocks``) whose first block's expansion is the first level
    (``backbone_expansion_level``): the stage after ``out_indices[0]``. Checks the model allows it."""
    stage_ends = getattr(model, "stage_ends", None)
    if stage_ends is None or not hasattr(model, "blocks") or len(out_indices) != 2 or use_head:
        raise ValueError("backbone_expansion_level needs a timm EfficientNet/MobileNet-family backbone, two "
                         "backbone_out_indices and backbone_use_head: false")
    stage = stage_ends[out_indices[0]]  # stage_ends count the stem as 0, so this is the next stage
    first = model.blocks[stage][0] if stage < len(model.blocks) else None
    if first is None or not hasattr(first, "conv_pw") or getattr(first, "has_skip", True) \
            or getattr(first, "conv_s2d", None) is not None:
        raise ValueError(f"backbone_expansion_level: the block after level {out_indices[0]} is not an inverted "
                         "residual that opens a new stride")
    return stage
