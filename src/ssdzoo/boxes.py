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

    Each step works on whole (..., N, M) planes with the M axis contiguous and writes in place,
    which the CPU vectorizes (several times faster than (..., N, M, 2) corner pairs); the
    arithmetic is the same, so the values are too. The in-place steps make it unfit for autograd.

    >>> a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    >>> b = torch.tensor([[0.5, 0.5, 1.5, 1.5]])
    >>> round(pairwise_iou(a, b).item(), 6) == round(1 / 7, 6)
    True
    """
    x1a, y1a, x2a, y2a = boxes1_xyxy[..., :, None, :].unbind(-1)  # each (..., N, 1)
    x1b, y1b, x2b, y2b = boxes2_xyxy.transpose(-1, -2).contiguous()[..., None, :].unbind(-3)  # each (..., 1, M)
    width = torch.minimum(x2a, x2b).sub_(torch.maximum(x1a, x1b)).clamp_(min=0)  # (..., N, M)
    height = torch.minimum(y2a, y2b).sub_(torch.maximum(y1a, y1b)).clamp_(min=0)
    inter = width.mul_(height)
    union = (box_area(boxes1_xyxy)[..., :, None] + box_area(boxes2_xyxy)[..., None, :]).sub_(inter)
    return inter.div_(union)


def pairwise_pixel_iou(boxes1_xyxy: Tensor, boxes2_xyxy: Tensor) -> Tensor:
    """IoU of pixel boxes whose corners are inclusive pixel indices (Pascal VOC's convention,
    which the seed's NMS uses): a box from x1 to x2 is x2 - x1 + 1 pixels wide.

    Shapes: (..., N, 4), (..., M, 4) -> (..., N, M). The operations are the seed's numpy ones
    in the same order, so float64 inputs give its values bit for bit.
    Pixel boxes 0..9 and 5..14 (10 wide) overlap by 5 x 10: IoU 50 / 150.

    >>> pairwise_pixel_iou(torch.tensor([[0.0, 0.0, 9.0, 9.0]]), torch.tensor([[5.0, 0.0, 14.0, 9.0]]))
    tensor([[0.3333]])
    """
    x1a, y1a, x2a, y2a = boxes1_xyxy[..., :, None, :].unbind(-1)  # each (..., N, 1)
    x1b, y1b, x2b, y2b = boxes2_xyxy.transpose(-1, -2).contiguous()[..., None, :].unbind(-3)  # each (..., 1, M)
    width = torch.minimum(x2a, x2b).sub_(torch.maximum(x1a, x1b)).add_(1).clamp_(min=0)  # (..., N, M)
    height = torch.minimum(y2a, y2b).sub_(torch.maximum(y1a, y1b)).add_(1).clamp_(min=0)
    inter = width.mul_(height)
    area1, area2 = ((boxes[..., 2:] - boxes[..., :2] + 1).prod(-1) for boxes in (boxes1_xyxy, boxes2_xyxy))
    return inter.div_((area1[..., :, None] + area2[..., None, :]).sub_(inter))


def clip_boxes(boxes_xyxy: Tensor, height: float = 1.0, width: float = 1.0) -> Tensor:
    """Clip corners to [0, width] x [0, height] (the unit square by default)."""
    limit = boxes_xyxy.new_tensor([width, height, width, height])
    return torch.minimum(boxes_xyxy.clamp(min=0), limit)
