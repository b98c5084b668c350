"""Decoded boxes and class probabilities -> final detections, with the seed's rule.

Per image and class: keep scores > min_score, greedy NMS at nms_threshold in the seed's float64
pixel arithmetic, at most max_boxes. All (image, class) groups of a batch go through NMS
together, as padded (groups, k) tensors, and usually only their k best-scored candidates:
greedy NMS decides a box from higher-scored boxes alone, so a group whose top k yield
max_boxes survivors is settled, and the rest are redone with 2k, 4k, ... candidates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from .boxes import pairwise_pixel_iou

if TYPE_CHECKING:
    from .config import Config


class Detections(NamedTuple):
    """Final detections of one image."""

    boxes: Tensor  # (K, 4) xyxy in pixels of the original image
    scores: Tensor  # (K,)
    labels: Tensor  # (K,) int64, 1..num_classes-1; ordered by label, then score descending


# Pairwise IoU tables of (groups, k, k) float64 are built this many elements at a time.
_NMS_CHUNK_ELEMENTS = 1 << 18


def postprocess(boxes_xyxy: Tensor, probs: Tensor, cfg: "Config", image_hw: Tensor) -> list[Detections]:
    """boxes_xyxy (N, A, 4) normalized, probs (N, A, C) with column 0 = background,
    image_hw (N, 2) original (height, width) -> N Detections in pixels."""
    return select_detections(boxes_xyxy, probs, image_hw, min_score=cfg.min_score,
                             nms_threshold=cfg.nms_threshold, max_per_class=cfg.max_boxes)


def select_detections(
    boxes_xyxy: Tensor, probs: Tensor, image_hw: Tensor, *, min_score: float,
    nms_threshold: float, max_per_class: int,
) -> list[Detections]:
    """``postprocess`` with its parameters spelled out (see there for shapes)."""
    num_images = len(probs)
    image_hw = torch.as_tensor(image_hw, device=probs.device).reshape(num_images, 2).double()
    image_i, anchor_i, class_i, scores = ranked_candidates(probs[..., 1:], min_score=min_score)
    # the seed scales float32 boxes by integer sizes in float64, and runs NMS in float64
    boxes_px = (boxes_xyxy.double() * image_hw[:, None, [1, 0, 1, 0]])[image_i, anchor_i]  # (P, 4)
    keep = greedy_nms(boxes_px, image_i * probs.shape[2] + class_i, threshold=nms_threshold,
                      max_keep=max_per_class).nonzero()[:, 0]
    per_image = torch.bincount(image_i[keep], minlength=num_images).tolist()
    return [Detections(b, s, c) for b, s, c in zip(
        boxes_px[keep].float().split(per_image), scores[keep].split(per_image),
        (class_i[keep] + 1).split(per_image))]


def ranked_candidates(class_probs: Tensor, *, min_score: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every (image, anchor, class) with a probability over ``min_score``, in NMS order.

    class_probs: (N, A, K) without the background column. Returns ``image_i``, ``anchor_i``,
    ``class_i`` (0-based) and ``scores``, each (P,), ordered by image, class, score descending,
    then anchor (the seed's order among equal scores is numpy's unstable sort's).
    """
    image_i, anchor_i, class_i = torch.nonzero(class_probs > min_score, as_tuple=True)  # by anchor, then class
    scores = class_probs[image_i, anchor_i, class_i].float()
    # one stable sort on (group, score descending): positive floats order like their bits
    descending = (1 << 31) - 1 - scores.view(torch.int32).long()
    order = torch.sort((image_i * class_probs.shape[2] + class_i) << 31 | descending, stable=True).indices
    return image_i[order], anchor_i[order], class_i[order], scores[order]


def greedy_nms(boxes_px: Tensor, group: Tensor, *, threshold: float, max_keep: int, top_k: int = 128) -> Tensor:
    """The seed's greedy NMS within each group, for all groups at once.

    boxes_px: (P, 4) xyxy pixel boxes, sorted by group and by rank (best first) within a
    group; group: (P,) int, nondecreasing. Returns keep (P,) bool: the first ``max_keep``
    survivors of each group. Groups start with their ``top_k`` best boxes; a group is settled
    when it has no more boxes or already ``max_keep`` survivors, else it is redone with twice
    as many.
    """
    keep = torch.zeros(len(group), dtype=torch.bool, device=group.device)
    if len(group) == 0:
        return keep
    _, counts = torch.unique_consecutive(group, return_counts=True)  # (G,)
    starts = counts.cumsum(0) - counts
    k = min(top_k, int(counts.max()))
    while True:
        rank = torch.arange(k, device=group.device)
        valid = rank < counts[:, None]  # (G, k)
        index = (starts[:, None] + rank).clamp_(max=len(group) - 1)  # padding slots: any real box
        kept = greedy_nms_padded(boxes_px[index], valid, threshold=threshold)
        kept &= kept.cumsum(1) <= max_keep
        settled = (counts <= k) | (kept.sum(1) >= max_keep)
        keep[index[kept & settled[:, None]]] = True
        counts, starts = counts[~settled], starts[~settled]
        if len(counts) == 0:
            return keep
        k = min(2 * k, int(counts.max()))


def greedy_nms_padded(boxes_px: Tensor, valid: Tensor, *, threshold: float) -> Tensor:
    """Greedy NMS of groups padded to a common length k.

    boxes_px: (G, k, 4) pixel boxes, best first; valid: (G, k) bool. Returns keep (G, k).

    Box j survives iff no surviving box ranked above it has IoU > threshold with it. That
    rule determines box j from boxes 0..j-1, so iterating ``keep = valid & ~suppressed(keep)``
    from all True fixes one more leading box per round at least, and stops at the unique
    answer when nothing changes: a few rounds of one batched matrix product each, where the
    seed loops once per survivor.
    """
    keep = torch.empty_like(valid)
    per_chunk = max(1, _NMS_CHUNK_ELEMENTS // valid.shape[1] ** 2)
    for start in range(0, len(valid), per_chunk):
        chunk = slice(start, start + per_chunk)
        keep[chunk] = _greedy_nms_fixed_point(boxes_px[chunk], valid[chunk], threshold=threshold)
    return keep


def _greedy_nms_fixed_point(boxes_px: Tensor, valid: Tensor, *, threshold: float) -> Tensor:
    """``greedy_nms_padded`` for one chunk of groups."""
    # (i, j): box i ranks above box j and overlaps it; padding never survives, so never suppresses
    suppresses = (pairwise_pixel_iou(boxes_px, boxes_px) > threshold).triu_(1).float()  # (G, k, k)
    keep = valid
    while True:
        new_keep = valid & (torch.bmm(keep.float()[:, None, :], suppresses)[:, 0] == 0)  # (G, k)
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep
