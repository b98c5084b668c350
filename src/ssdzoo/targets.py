"""Match anchors to ground truth and encode/decode box offsets (an inverse pair).

Offsets are SSD's (Liu et al. 2016, eq. 2) divided by the Caffe prior variances
``prior_scaling = (0.1, 0.2)``:
    dx = (cx - anchor_cx) / (anchor_w * 0.1),   dw = log(w / anchor_w) / 0.2
in (dx, dy, dw, dh) order. The seed stores (dy, dx, dh, dw); ssdzoo is x-first throughout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .boxes import clip_boxes, cxcywh_to_xyxy, pairwise_iou, xyxy_to_cxcywh

if TYPE_CHECKING:
    from .config import Config

# Matching works on (images x ground truths x anchors) IoU tables; larger batches are split
# into chunks of about this many elements so that 51150 anchors x 100 boxes x 32 images
# don't need gigabytes at once.
_IOU_CHUNK_ELEMENTS = 1 << 24


def match_anchors(iou: Tensor, valid: Tensor, *, threshold: float) -> tuple[Tensor, Tensor]:
    """The seed's matching rule, for a batch at once.

    iou: (N, G, A) IoU of each ground truth with each anchor; valid: (N, G) bool (False for
    padding rows). Returns ``matched_gt`` (N, A) int64, the ground truth each anchor takes, and
    ``positive`` (N, A) bool.

    The seed visits ground truths in order: each one's best anchor gets score 2.0, and an anchor
    takes a ground truth whose score is over ``threshold`` and strictly above its best so far.
    The result is the same as taking, per anchor, the first ground truth with the highest score,
    if that score is over the threshold: later ground truths win only with a strictly higher one.
    """
    scores = force_best_anchors(iou.masked_fill(~valid[..., None], -1.0), valid)
    best_score, matched_gt = scores.max(dim=1)  # (N, A): first ground truth on ties
    return matched_gt, best_score > threshold


def force_best_anchors(scores: Tensor, valid: Tensor) -> Tensor:
    """Give each valid ground truth's best anchor (the first on ties) score 2.0, in place.

    scores: (N, G, A) IoU, -1 on padding rows; valid: (N, G) bool. Returns ``scores``.
    """
    best_anchor = first_argmax(scores, dim=2)  # (N, G, 1)
    forced = torch.where(valid, 2.0, -1.0).to(scores.dtype)[..., None]  # padding rows stay -1
    return scores.scatter_(2, best_anchor, forced)


def first_argmax(x: Tensor, *, dim: int) -> Tensor:
    """``x.argmax(dim, keepdim=True)``, the first index of the maximum, for finite float x.

    Built from ops the CPU vectorizes, about twice as fast there as argmax: ``x - max`` is 0
    exactly at the maxima and negative elsewhere, so ``sign * length - index`` is -index at a
    maximum and below -length elsewhere, and its max picks the first maximum. The index must
    be exact in x's dtype (length < 2^23 for float32).
    """
    shape = [1] * x.dim()
    shape[dim] = x.shape[dim]
    neg_index = -torch.arange(x.shape[dim], dtype=x.dtype, device=x.device).view(shape)
    is_max = (x - x.amax(dim, keepdim=True)).sign_()  # 0 at a maximum, -1 elsewhere
    key = torch.add(neg_index, is_max, alpha=x.shape[dim])
    return key.amax(dim, keepdim=True).neg_().long()


def match_scores(gt_boxes_xyxy: Tensor, valid: Tensor, anchors_xyxy: Tensor) -> Tensor:
    """The scores ``match_anchors`` compares, computed from the boxes: (N, G, A) IoU, -1 on
    padding rows, 2.0 at each valid ground truth's best anchor.

    gt_boxes_xyxy: (N, G, 4); valid: (N, G) bool; anchors_xyxy: (A, 4). Padding rows become
    empty boxes (IoU exactly 0), so one vectorized add marks them -1 instead of a masked fill.
    """
    boxes_xyxy = torch.where(valid[..., None], gt_boxes_xyxy, 0.0)
    row_offset = (valid.to(boxes_xyxy.dtype) - 1.0)[..., None]  # (N, G, 1): 0 valid, -1 padding
    return force_best_anchors(pairwise_iou(boxes_xyxy, anchors_xyxy).add_(row_offset), valid)


def encode(
    gt_boxes_xyxy: Tensor, gt_labels: Tensor, anchors_cxcywh: Tensor, cfg: "Config",
) -> tuple[Tensor, Tensor]:
    """Regression and class targets for every anchor of a batch.

    gt_boxes_xyxy: (N, G, 4) normalized; gt_labels: (N, G) int, 0 marks padding rows;
    anchors_cxcywh: (A, 4). Returns ``target_loc`` (N, A, 4) float32 (dx, dy, dw, dh), zero on
    unmatched anchors, and ``target_labels`` (N, A) int64, 0 = background.
    Matching uses the unclipped anchors' corners, as the seed does.

    On the CPU only the positive anchors (a few per ground truth) get a matched ground truth and
    offsets; on other devices every anchor does, which avoids the host sync that finding the
    positives would cost there. Both give the same targets.
    """
    num_images, num_gt = gt_labels.shape
    anchors = anchors_cxcywh.to(gt_boxes_xyxy.device)
    # corners from the float64 centres/sizes, rounded once, as the seed's numpy does
    anchors_xyxy = cxcywh_to_xyxy(anchors.double()).to(gt_boxes_xyxy.dtype)
    anchors = anchors.to(gt_boxes_xyxy.dtype)
    valid = gt_labels > 0
    if num_gt == 0:
        return (torch.zeros(num_images, len(anchors), 4, device=anchors.device),
                torch.zeros(num_images, len(anchors), dtype=torch.int64, device=anchors.device))

    assign = assign_positives if gt_boxes_xyxy.device.type == "cpu" else assign_all
    per_chunk = max(1, _IOU_CHUNK_ELEMENTS // (num_gt * len(anchors)))
    target_loc, target_labels = [], []
    for start in range(0, num_images, per_chunk):
        chunk = slice(start, start + per_chunk)
        scores = match_scores(gt_boxes_xyxy[chunk], valid[chunk], anchors_xyxy)  # (n, G, A)
        loc, labels = assign(scores, gt_boxes_xyxy[chunk], gt_labels[chunk], anchors,
                             threshold=cfg.match_threshold, prior_scaling=cfg.prior_scaling)
        target_loc.append(loc)
        target_labels.append(labels)
    if len(target_loc) == 1:
        return target_loc[0], target_labels[0]
    return torch.cat(target_loc), torch.cat(target_labels)


def assign_all(
    scores: Tensor, gt_boxes_xyxy: Tensor, gt_labels: Tensor, anchors_cxcywh: Tensor, *,
    threshold: float, prior_scaling: tuple[float, float],
) -> tuple[Tensor, Tensor]:
    """Targets from ``match_scores`` (N, G, A), computed for every anchor and then masked.

    Returns (N, A, 4) offsets and (N, A) int64 labels, zero where no ground truth scores over
    ``threshold``. Fixed shapes: no host sync on an accelerator.
    """
    best_score, matched_gt = scores.max(dim=1)  # (N, A): first ground truth on ties
    positive = best_score > threshold
    target_labels = gt_labels.long().gather(1, matched_gt).masked_fill(~positive, 0)
    boxes_xyxy = gt_boxes_xyxy.gather(1, matched_gt[..., None].expand(-1, -1, 4))  # (N, A, 4)
    target_loc = encode_offsets(boxes_xyxy, anchors_cxcywh, prior_scaling=prior_scaling)
    return target_loc.masked_fill(~positive[..., None], 0.0), target_labels


def assign_positives(
    scores: Tensor, gt_boxes_xyxy: Tensor, gt_labels: Tensor, anchors_cxcywh: Tensor, *,
    threshold: float, prior_scaling: tuple[float, float],
) -> tuple[Tensor, Tensor]:
    """``assign_all``'s result, computed on the positive anchors only.

    A few percent of the anchors are positive, so this skips most of the work (the per-anchor
    argmax over ground truths and the offsets); finding them is a data-dependent shape, which
    costs a host sync on an accelerator.
    """
    num_images, _, num_anchors = scores.shape
    image_i, anchor_i = torch.nonzero(scores.amax(dim=1) > threshold, as_tuple=True)  # (P,)
    gt_i = scores.transpose(1, 2)[image_i, anchor_i].argmax(dim=1)  # (P,): first ground truth on ties
    target_labels = torch.zeros(num_images, num_anchors, dtype=torch.int64, device=scores.device)
    target_labels[image_i, anchor_i] = gt_labels[image_i, gt_i].long()
    target_loc = gt_boxes_xyxy.new_zeros(num_images, num_anchors, 4)
    target_loc[image_i, anchor_i] = encode_offsets(gt_boxes_xyxy[image_i, gt_i], anchors_cxcywh[anchor_i],
                                                   prior_scaling=prior_scaling)
    return target_loc, target_labels


def encode_offsets(boxes_xyxy: Tensor, anchors_cxcywh: Tensor, *, prior_scaling: tuple[float, float]) -> Tensor:
    """(..., A, 4) boxes against (A, 4) anchors -> (..., A, 4) offsets (dx, dy, dw, dh).

    >>> encode_offsets(torch.tensor([[0.2, 0.2, 0.6, 0.6]]), torch.tensor([[0.5, 0.5, 0.2, 0.2]]),
    ...                prior_scaling=(0.1, 0.2))
    tensor([[-5.0000, -5.0000,  3.4657,  3.4657]])
    """
    boxes_cxcywh = xyxy_to_cxcywh(boxes_xyxy)
    centre = (boxes_cxcywh[..., :2] - anchors_cxcywh[:, :2]) / (anchors_cxcywh[:, 2:] * prior_scaling[0])
    ratio = (boxes_cxcywh[..., 2:] / anchors_cxcywh[:, 2:]).clamp(min=1e-6)  # the seed's floor
    return torch.cat([centre, ratio.log() / prior_scaling[1]], dim=-1)


def decode(loc: Tensor, anchors_cxcywh: Tensor, cfg: "Config") -> Tensor:
    """Offsets (..., A, 4) (dx, dy, dw, dh) -> boxes (..., A, 4) xyxy normalized, clipped to [0, 1]."""
    return decode_offsets(loc, anchors_cxcywh.to(loc), prior_scaling=cfg.prior_scaling)


def decode_offsets(loc: Tensor, anchors_cxcywh: Tensor, *, prior_scaling: tuple[float, float]) -> Tensor:
    """The inverse of ``encode_offsets``, clipped to the unit square."""
    centre = loc[..., :2] * prior_scaling[0] * anchors_cxcywh[:, 2:] + anchors_cxcywh[:, :2]
    size = torch.exp(loc[..., 2:] * prior_scaling[1]) * anchors_cxcywh[:, 2:]
    return clip_boxes(torch.cat([centre - size / 2, centre + size / 2], dim=-1))
