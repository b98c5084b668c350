"""Match anchors to ground truth and encode/decode box offsets (an inverse pair).

Offsets are SSD's (Liu et al. 2016, eq. 2) divided by the Caffe prior variances
``prior_scaling = (0.1, 0.2)``:
    dx = (cx - anchor_cx) / (anchor_w * 0.1),   dw = log(w / anchor_w) / 0.2
in (dx, dy, dw, dh) order. The seed stores (dy, dx, dh, dw); ssdzoo is x-first throughout.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable, Optional

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
    scores = iou.masked_fill(~valid[..., None], -1.0)
    best_anchor = scores.argmax(dim=2, keepdim=True)  # (N, G, 1): first index on ties
    forced = torch.full_like(best_anchor, 2.0, dtype=scores.dtype).masked_fill(~valid[..., None], -1.0)
    scores = scores.scatter(2, best_anchor, forced)
    best_score, matched_gt = scores.max(dim=1)  # (N, A): first ground truth on ties
    return matched_gt, best_score > threshold


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


def encode(
    gt_boxes_xyxy: Tensor, gt_labels: Tensor, anchors_cxcywh: Tensor, cfg: "Config",
) -> tuple[Tensor, Tensor]:
    """Regression and class targets for every anchor of a batch.

    gt_boxes_xyxy: (N, G, 4) normalized; gt_labels: (N, G) int, 0 marks padding rows;
    anchors_cxcywh: (A, 4). Returns ``target_loc`` (N, A, 4) float32 (dx, dy, dw, dh), zero on
    unmatched anchors, and ``target_labels`` (N, A) int64, 0 = background.
    Matching uses the unclipped anchors' corners, as the seed does; ``matching: paper`` matches
    with ``match_anchors_paper`` instead of the seed's ``match_anchors``.

    On the CPU the work follows the data (``assign_positives``: real ground truths, positive
    anchors); on other devices it keeps fixed shapes (``assign_all``), so that no host sync
    stalls the queue. Both give the same targets.
    """
    num_images, num_gt = gt_labels.shape
    anchors = anchors_cxcywh.to(gt_boxes_xyxy.device)
    # corners from the float64 centres/sizes, rounded once, as the seed's numpy does
    anchors_xyxy = cxcywh_to_xyxy(anchors.double()).to(gt_boxes_xyxy.dtype)
    anchors = anchors.to(gt_boxes_xyxy.dtype)
    if num_gt == 0:
        return (torch.zeros(num_images, len(anchors), 4, device=anchors.device),
                torch.zeros(num_images, len(anchors), dtype=torch.int64, device=anchors.device))

    if cfg.matching == "paper":
        assign = partial(assign_all, match=match_anchors_paper)
    else:
        assign = assign_positives if gt_boxes_xyxy.device.type == "cpu" else assign_all
    per_chunk = max(1, _IOU_CHUNK_ELEMENTS // (num_gt * len(anchors)))
    target_loc, target_labels = [], []
    for start in range(0, num_images, per_chunk):
        chunk = slice(start, start + per_chunk)
        loc, labels = assign(gt_boxes_xyxy[chunk], gt_labels[chunk], anchors_xyxy, anchors,
                             threshold=cfg.match_threshold, prior_scaling=cfg.prior_scaling)
        target_loc.append(loc)
        target_labels.append(labels)
    if len(target_loc) == 1:
        return target_loc[0], target_labels[0]
    return torch.cat(target_loc), torch.cat(target_labels)


def match_anchors_paper(iou: Tensor, valid: Tensor, *, threshold: float) -> tuple[Tensor, Tensor]:
    """The SSD paper's matching (Liu et al. 2016, section 2.2) as torchvision's SSDMatcher
    does it, for a batch at once; arguments and results as ``match_anchors``.

    An anchor takes the ground truth it overlaps most (the first on ties) and is positive if
    that IoU is at least ``threshold``; then each ground truth takes its own best anchor (the
    first on ties) whatever the IoU, a later ground truth over an earlier one.
    """
    scores = iou.masked_fill(~valid[..., None], -1.0)  # padding rows never win
    best_iou, matched_gt = scores.max(dim=1)  # (N, A)
    positive = best_iou >= threshold
    best_anchor = first_argmax(scores, dim=2)[..., 0]  # (N, G)
    num_gt = scores.shape[1]
    # a later ground truth wins a shared best anchor: write them in order, the last write kept
    claim = torch.full_like(matched_gt, -1)
    gt_index = torch.arange(num_gt, device=iou.device).expand_as(best_anchor)
    claim.scatter_reduce_(1, best_anchor, gt_index.masked_fill(~valid, -1), "amax")
    forced = claim >= 0
    return torch.where(forced, claim, matched_gt), positive | forced


def assign_all(
    gt_boxes_xyxy: Tensor, gt_labels: Tensor, anchors_xyxy: Tensor, anchors_cxcywh: Tensor, *,
    threshold: float, prior_scaling: tuple[float, float], match: Callable = None,
) -> tuple[Tensor, Tensor]:
    """``encode``'s targets for one chunk, computed for every (ground truth, anchor) pair and
    then masked: fixed shapes, no host sync (the accelerator path, and ``matching: paper``).

    gt_boxes_xyxy: (N, G, 4); gt_labels: (N, G); anchors: (A, 4) as corners and as
    centre/size. ``match``: the matching rule (the seed's ``match_anchors`` by default).
    Returns (N, A, 4) offsets and (N, A) int64 labels.
    """
    iou = pairwise_iou(gt_boxes_xyxy, anchors_xyxy)  # (N, G, A)
    matched_gt, positive = (match or match_anchors)(iou, gt_labels > 0, threshold=threshold)
    target_labels = gt_labels.long().gather(1, matched_gt).masked_fill(~positive, 0)
    boxes_xyxy = gt_boxes_xyxy.gather(1, matched_gt[..., None].expand(-1, -1, 4))  # (N, A, 4)
    target_loc = encode_offsets(boxes_xyxy, anchors_cxcywh, prior_scaling=prior_scaling)
    return target_loc.masked_fill(~positive[..., None], 0.0), target_labels


def assign_positives(
    gt_boxes_xyxy: Tensor, gt_labels: Tensor, anchors_xyxy: Tensor, anchors_cxcywh: Tensor, *,
    threshold: float, prior_scaling: tuple[float, float],
) -> tuple[Tensor, Tensor]:
    """``assign_all``'s result, with work that follows the data (the CPU path).

    IoU only for the real ground truths (a batch is padded to its fullest image, often several
    times the average), and the choice of a ground truth and the offsets only for the positive
    anchors (a few percent). A ground truth's best anchor, which the seed forces to score 2.0,
    is searched over all anchors only when its best IoU is at most ``threshold``: otherwise
    that anchor is positive anyway, and is found among the positives.
    """
    num_images, num_gt = gt_labels.shape
    image_r, gt_r = torch.nonzero(gt_labels > 0, as_tuple=True)  # (V,) the real ground truths
    iou = pairwise_iou(gt_boxes_xyxy[image_r, gt_r], anchors_xyxy)  # (V, A)
    best_iou = iou.amax(dim=1)  # (V,)
    if len(iou) == num_images * num_gt:  # no padding
        scores = iou.view(num_images, num_gt, -1)
    else:
        scores = iou.new_full((num_images, num_gt, len(anchors_xyxy)), -1.0)  # -1: padding rows
        scores[image_r, gt_r] = iou
    low = (best_iou <= threshold).nonzero()[:, 0]
    scores[image_r[low], gt_r[low], first_argmax(iou[low], dim=1)[:, 0]] = 2.0

    image_i, anchor_i = torch.nonzero(scores.amax(dim=1) > threshold, as_tuple=True)  # (P,)
    table = scores.transpose(1, 2)[image_i, anchor_i]  # (P, G)
    best_iou_ng = torch.full_like(scores[:, :, 0], float("inf"))  # inf: nothing left to force
    best_iou_ng[image_r, gt_r] = best_iou.masked_fill(best_iou <= threshold, float("inf"))
    force_first_maxima(table, image_i, best_iou_ng)
    gt_i = table.argmax(dim=1)  # (P,): first ground truth on ties

    target_labels = torch.zeros(num_images, len(anchors_xyxy), dtype=torch.int64, device=iou.device)
    target_labels[image_i, anchor_i] = gt_labels[image_i, gt_i].long()
    target_loc = gt_boxes_xyxy.new_zeros(num_images, len(anchors_xyxy), 4)
    target_loc[image_i, anchor_i] = encode_offsets(gt_boxes_xyxy[image_i, gt_i], anchors_cxcywh[anchor_i],
                                                   prior_scaling=prior_scaling)
    return target_loc, target_labels


def force_first_maxima(table: Tensor, image_i: Tensor, best_iou: Tensor) -> None:
    """Set 2.0, in place, where each ground truth first reaches its best IoU among the anchors.

    table: (P, G) scores of P anchors, sorted by image then anchor; image_i: (P,) their images;
    best_iou: (N, G) each ground truth's best IoU over all anchors (inf: none to set). The
    first listed anchor of an image at that IoU is the first of all, when all such anchors are
    listed (``assign_positives`` lists every anchor over the threshold).
    """
    num_listed = len(table)
    position = torch.arange(num_listed, device=table.device)[:, None].expand_as(table)
    at_best = torch.where(table == best_iou[image_i], position, num_listed)  # (P, G)
    first = torch.full_like(best_iou, num_listed, dtype=torch.int64)
    first.scatter_reduce_(0, image_i[:, None].expand_as(table), at_best, "amin")  # (N, G)
    image_f, gt_f = torch.nonzero(first < num_listed, as_tuple=True)
    table[first[image_f, gt_f], gt_f] = 2.0


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
    return decode_offsets(loc, anchors_cxcywh.to(loc), prior_scaling=cfg.prior_scaling,
                          max_log_scale=cfg.decode_max_log_scale)


def decode_offsets(loc: Tensor, anchors_cxcywh: Tensor, *, prior_scaling: tuple[float, float],
                   max_log_scale: Optional[float] = None) -> Tensor:
    """The inverse of ``encode_offsets``, clipped to the unit square. ``max_log_scale`` caps
    dw, dh (after the prior scaling) before exp, as torchvision's BoxCoder does at log(1000 / 16)."""
    centre = loc[..., :2] * prior_scaling[0] * anchors_cxcywh[:, 2:] + anchors_cxcywh[:, :2]
    log_scale = loc[..., 2:] * prior_scaling[1]
    if max_log_scale is not None:
        log_scale = log_scale.clamp(max=max_log_scale)
    size = torch.exp(log_scale) * anchors_cxcywh[:, 2:]
    return clip_boxes(torch.cat([centre - size / 2, centre + size / 2], dim=-1))
