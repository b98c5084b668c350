"""Pure box math on tensors. Box layouts are in the names: xyxy, cxcywh, xywh (COCO).

Every function takes boxes in the last dimension and any leading batch dimensions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def cxcywh_to_xyxy(boxes_cxcywh: Tensor) -> Tensor:
    """(..., 4) centre/size -> (..., 4) corners.

    >>> cxcywh_to_xyxy(torch.tensor([0.5, 0.5, 0.2, 0.4]))
    tensor([0.4000, 0.3000, 0.6000, 0.7000])
    """
    centre, size = boxes_cxcywh[..., :2], boxes_cxcywh[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def xyxy_to_cxcywh(boxes_xyxy: Tensor) -> Tensor:
    """(..., 4) corners -> (..., 4) centre/size.

    >>> xyxy_to_cxcywh(torch.tensor([0.0, 0.0, 2.0, 1.0]))
    tensor([1.0000, 0.5000, 2.0000, 1.0000])
    """
    top_left, bottom_right = boxes_xyxy[..., :2], boxes_xyxy[..., 2:]
    return torch.cat([(top_left + bottom_right) / 2, bottom_right - top_left], dim=-1)


def xyxy_to_xywh(boxes_xyxy: Tensor) -> Tensor:
    """(..., 4) corners -> (..., 4) COCO's top-left/size."""
    return torch.cat([boxes_xyxy[..., :2], boxes_xyxy[..., 2:] - boxes_xyxy[..., :2]], dim=-1)


def xywh_to_xyxy(boxes_xywh: Tensor) -> Tensor:
    """(..., 4) COCO's top-left/size -> (..., 4) corners."""
    return torch.cat([boxes_xywh[..., :2], boxes_xywh[..., :2] + boxes_xywh[..., 2:]], dim=-1)


def box_area(boxes_xyxy: Tensor) -> Tensor:
    """(..., 4) -> (...); degenerate boxes have area 0."""
    size = (boxes_xyxy[..., 2:] - boxes_xyxy[..., :2]).clamp(min=0)
    return size[..., 0] * size[..., 1]


def pairwise_iou(boxes1_xyxy: Tensor, boxes2_xyxy: Tensor) -> Tensor:
    """IoU of every box in ``boxes1`` with every box in ``boxes2``.

    Shapes: (..., N, 4), (..., M, 4) -> (..., N, M); leading dims broadcast.
    Two unit squares offset by (0.5, 0.5) overlap by 1/4 of each: IoU 0.25 / 1.75 = 1/7.

    >>> a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    >>> b = torch.tensor([[0.5, 0.5, 1.5, 1.5]])
    >>> round(pairwise_iou(a, b).item(), 6) == round(1 / 7, 6)
    True
    """
    top_left = torch.maximum(boxes1_xyxy[..., :, None, :2], boxes2_xyxy[..., None, :, :2])
    bottom_right = torch.minimum(boxes1_xyxy[..., :, None, 2:], boxes2_xyxy[..., None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0)  # (..., N, M, 2)
    inter = overlap[..., 0] * overlap[..., 1]
    union = box_area(boxes1_xyxy)[..., :, None] + box_area(boxes2_xyxy)[..., None, :] - inter
    return inter / union


def clip_boxes(boxes_xyxy: Tensor, height: float = 1.0, width: float = 1.0) -> Tensor:
    """Clip corners to [0, width] x [0, height] (the unit square by default)."""
    limit = boxes_xyxy.new_tensor([width, height, width, height])
    return torch.minimum(boxes_xyxy.clamp(min=0), limit)
