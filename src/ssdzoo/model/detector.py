"""The detector: backbone -> neck -> head. One mode: always raw (loc, logits)."""

from __future__ import annotations

from torch import Tensor, nn


class Detector(nn.Module):
    """images (N, 3, H, W) normalized -> (loc (N, A, 4) offsets dx, dy, dw, dh,
    logits (N, A, num_classes)), the same in train and eval mode. Decoding, sigmoid and NMS
    live outside (``ssdzoo.decode``, ``ssdzoo.postprocess``) so export can wrap them."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """The neck's maps, one per anchor level."""
        return self.neck(self.backbone(images))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.feature_maps(images))
