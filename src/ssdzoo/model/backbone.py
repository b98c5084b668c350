"""Any timm model as a multi-scale feature extractor.

The backbone is timm's own classification model with its classifier removed; its feature maps
come from timm's ``forward_intermediates`` API, so its parameter names stay those of timm's
checkpoints. Channels and strides come from ``feature_info``: no dummy forward pass.
"""

from __future__ import annotations

import timm
from torch import Tensor, nn

from .layers import use_same_padding


class TimmBackbone(nn.Module):
    """Feature maps at ``out_indices`` (indices into ``feature_info``).

    With ``use_head`` the last map is taken after the model's own head conv (timm's
    ``forward_features`` output), as the seed's MobileNetV2 takes its 1280-channel conv.
    """

    def __init__(self, name: str, out_indices: tuple[int, ...], *, use_head: bool = False,
                 **timm_kwargs):
        super().__init__()
        model = timm.create_model(name, pretrained=False, num_classes=0, **timm_kwargs)
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

    def adapt(self, *, same_padding: tuple[str, ...] = (), bn_eps: float | None = None,
              stride_in_1x1: bool = False) -> None:
        """Numerics of other frameworks' versions of this network, in place; parameter names
        and shapes stay timm's. ``same_padding``: module-name globs whose strided convs and
        pools pad like TensorFlow "same"; ``bn_eps``: every BatchNorm's eps; ``stride_in_1x1``:
        ResNet v1's stride in each stage's first 1x1 conv (``move_stride_to_1x1``)."""
        use_same_padding(self.model, same_padding)
        if bn_eps is not None:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eps = bn_eps
        if stride_in_1x1:
            move_stride_to_1x1(self.model)

    def forward(self, images: Tensor) -> list[Tensor]:
        if not self.use_head:
            return self.model.forward_intermediates(images, indices=self.out_indices,
                                                    intermediates_only=True)
        final, maps = self.model.forward_intermediates(images, indices=self.out_indices)
        return maps[:-1] + [final]


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
