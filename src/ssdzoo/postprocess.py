"""Decoded boxes and class probabilities -> final detections, with the seed's rule.

Per class: keep scores > min_score, greedy NMS at nms_threshold, at most max_boxes. Done for a
whole batch with one batched NMS call (image and class together form the NMS group).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms

if TYPE_CHECKING:
    from .config import Config


class Detections(NamedTuple):
    """Final detections of one image."""

    boxes: Tensor  # (K, 4) xyxy in pixels of the original image
    scores: Tensor  # (K,)
    labels: Tensor  # (K,) int64, 1..num_classes-1; ordered by label, then score descending


# The seed's NMS measures pixel boxes with width x2 - x1 + 1 (the old Pascal VOC convention).
# That is ordinary IoU of the boxes extended by one pixel right and down, so ssdzoo passes
# extended boxes to torchvision's NMS kernel and keeps the seed's results.
_PIXEL_EXTENT = (0.0, 0.0, 1.0, 1.0)


def postprocess(boxes_xyxy: Tensor, probs: Tensor, cfg: "Config", image_hw: Tensor) -> list[Detections]:
    """boxes_xyxy (N, A, 4) normalized, probs (N, A, C) with column 0 = background,
    image_hw (N, 2) original (height, width) -> N Detections in pixels."""
    return select_detections(boxes_xyxy, probs, image_hw, min_score=cfg.min_score,
                             nms_threshold=cfg.nms_threshold, max_per_class=cfg.max_boxes)


def select_detections(
    boxes_xyxy: Tensor, probs: Tensor, image_hw: Tensor, *, min_score: float,
    nms_threshold: float, max_per_class: int,
) -> list[Detections]:
    num_images, _, num_classes = probs.shape
    image_hw = torch.as_tensor(image_hw, dtype=torch.float32, device=boxes_xyxy.device).reshape(num_images, 2)
    scale = image_hw[:, [1, 0, 1, 0]]  # (N, 4): width, height, width, height
    boxes_px = boxes_xyxy.float() * scale[:, None, :]  # (N, A, 4)

    # candidates: every (image, anchor, class >= 1) over the score threshold
    image_i, anchor_i, class_i = torch.nonzero(probs[..., 1:] > min_score, as_tuple=True)
    class_i = class_i + 1
    scores = probs[image_i, anchor_i, class_i].float()
    cand_boxes = boxes_px[image_i, anchor_i]
    group = image_i * num_classes + class_i
    keep = batched_nms(cand_boxes + cand_boxes.new_tensor(_PIXEL_EXTENT), scores, group, nms_threshold)

    # keep is ordered by score; a stable sort by group gives (image, class, score descending),
    # and the rank inside each group enforces max_per_class
    keep = keep[torch.sort(group[keep], stable=True).indices]
    kept_group = group[keep]
    first_of_group = torch.searchsorted(kept_group, kept_group, right=False)
    rank = torch.arange(len(keep), device=keep.device) - first_of_group
    keep = keep[rank < max_per_class]

    per_image = torch.bincount(image_i[keep], minlength=num_images).tolist()
    return [Detections(b, s, c) for b, s, c in zip(
        cand_boxes[keep].split(per_image), scores[keep].split(per_image), class_i[keep].split(per_image))]
