"""Decoded boxes and class probabilities -> final detections, with the seed's rule.

Per image and class: keep scores > min_score, greedy NMS at nms_threshold in the seed's float64
pixel arithmetic (boxes x2 - x1 + 1 pixels wide; x2 - x1 with ``nms_plus_one: false``, as
TensorFlow and torchvision measure them), at most max_boxes. All (image, class) groups of a batch go through NMS
together, as padded (groups, k) tensors, and usually only their k best-scored candidates:
greedy NMS decides a box from higher-scored boxes alone, so a group whose top k yield
max_boxes survivors is settled, and the rest are redone with 2k, 4k, ... candidates.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from .boxes import pairwise_iou, pairwise_pixel_iou

if TYPE_CHECKING:
    from .config import Config


class Detections(NamedTuple):
    """Final detections of one image."""

    boxes: Tensor  # (K, 4) xyxy in pixels of the original image
    scores: Tensor  # (K,)
    labels: Tensor  # (K,) int64, 1..num_classes-1; ordered by label, then score descending


# Groups go through NMS as padded (groups, k, k) float64 IoU tables of at most this many
# elements (2 MiB: they stay in cache and malloc reuses them), and of at least the small size
# before groups are split by size (fewer, larger calls when the tables are small anyway).
_NMS_CHUNK_ELEMENTS = 1 << 18
_NMS_SMALL_ELEMENTS = 1 << 14


def postprocess(boxes_xyxy: Tensor, probs: Tensor, cfg: "Config", image_hw: Tensor) -> list[Detections]:
    """boxes_xyxy (N, A, 4) normalized, probs (N, A, C) with column 0 = background,
    image_hw (N, 2) original (height, width) -> N Detections in pixels."""
    return select_detections(boxes_xyxy, probs, image_hw, min_score=cfg.min_score,
                             nms_threshold=cfg.nms_threshold, max_per_class=cfg.max_boxes,
                             plus_one=cfg.nms_plus_one)


def select_detections(
    boxes_xyxy: Tensor, probs: Tensor, image_hw: Tensor, *, min_score: float,
    nms_threshold: float, max_per_class: int, plus_one: bool = True,
) -> list[Detections]:
    """``postprocess`` with its parameters spelled out (see there for shapes)."""
    num_images = len(probs)
    image_hw = torch.as_tensor(image_hw, device=probs.device).reshape(num_images, 2).double()
    image_i, anchor_i, class_i, scores = ranked_candidates(probs[..., 1:], min_score=min_score)
    # the seed scales float32 boxes by integer sizes in float64, and runs NMS in float64
    boxes_px = (boxes_xyxy.double() * image_hw[:, None, [1, 0, 1, 0]])[image_i, anchor_i]  # (P, 4)
    keep = greedy_nms(boxes_px, image_i * probs.shape[2] + class_i, threshold=nms_threshold,
                      max_keep=max_per_class, plus_one=plus_one).nonzero()[:, 0]
    per_image = torch.bincount(image_i[keep], minlength=num_images).tolist()
    return [Detections(b, s, c) for b, s, c in zip(
        boxes_px[keep].float().split(per_image), scores[keep].split(per_image),
        (class_i[keep] + 1).split(per_image))]


def ranked_candidates(class_probs: Tensor, *, min_score: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every (image, anchor, class) with a probability over ``min_score``, in NMS order.

    class_probs: (N, A, K) without the background column. Returns ``image_i``, ``anchor_i``,
    ``class_i`` (0-based) and ``scores``, each (P,), ordered by image, class, score descending,
    then anchor (the seed's order among equal scores is numpy's unstable sort's). A NaN
    probability hides the other classes of its anchor.
    """
    # anchors with any class over the threshold first (a max the CPU vectorizes), then their classes:
    # with a trained model most anchors have none
    image_i, anchor_i = torch.nonzero(class_probs.amax(dim=2) > min_score, as_tuple=True)  # (R,)
    rows = class_probs[image_i, anchor_i]  # (R, K)
    row_i, class_i = torch.nonzero(rows > min_score, as_tuple=True)  # by anchor, then class
    image_i, anchor_i, scores = image_i[row_i], anchor_i[row_i], rows[row_i, class_i].float()
    # one stable sort on (group, score descending): positive floats order like their bits
    descending = (1 << 31) - 1 - scores.view(torch.int32).long()
    order = torch.sort((image_i * class_probs.shape[2] + class_i) << 31 | descending, stable=True).indices
    return image_i[order], anchor_i[order], class_i[order], scores[order]


def greedy_nms(boxes_px: Tensor, group: Tensor, *, threshold: float, max_keep: int, top_k: int = 128,
               plus_one: bool = True) -> Tensor:
    """The seed's greedy NMS within each group, for all groups at once.

    boxes_px: (P, 4) xyxy pixel boxes, sorted by group and by rank (best first) within a
    group; group: (P,) int, nondecreasing. Returns keep (P,) bool: the first ``max_keep``
    survivors of each group. Groups start with their ``top_k`` best boxes; a group is settled
    when it has no more boxes or already ``max_keep`` survivors, else it is redone with twice
    as many. ``plus_one``: the seed's pixel convention (see ``boxes.pairwise_pixel_iou``).
    """
    keep = torch.zeros(len(group), dtype=torch.bool, device=group.device)
    if len(group) == 0:
        return keep
    _, counts = torch.unique_consecutive(group, return_counts=True)  # (G,)
    starts = counts.cumsum(0) - counts
    limit = top_k
    while len(counts):
        settled = _nms_round(boxes_px, starts, counts, keep, limit=limit, threshold=threshold, max_keep=max_keep,
                             plus_one=plus_one)
        counts, starts = counts[~settled], starts[~settled]
        limit *= 2
    return keep


def _nms_round(boxes_px: Tensor, starts: Tensor, counts: Tensor, keep: Tensor, *, limit: int,
               threshold: float, max_keep: int, plus_one: bool) -> Tensor:
    """NMS of each group's best ``limit`` boxes; marks the survivors of settled groups in
    ``keep`` (P,) and returns which groups (G,) are settled.

    Groups go in chunks of similar size, largest first, each padded to its largest group: a
    chunk holds the groups of more than half that size (or as many as make a small table),
    so that a few large groups do not pad every other one to their size.
    """
    order = torch.argsort(counts, descending=True)
    counts_sorted = counts[order].tolist()
    most = counts_sorted[0]
    sizes = [min(count, limit) for count in counts_sorted]  # descending
    negated = [-size for size in sizes]  # ascending, for bisect
    settled = torch.ones_like(counts, dtype=torch.bool)
    first = 0
    while first < len(sizes):
        k = sizes[first]
        fits = max(1, _NMS_CHUNK_ELEMENTS // k ** 2)
        similar = bisect.bisect_left(negated, -(k // 2), lo=first)  # the sizes over k // 2
        last = min(first + fits, max(similar, first + _NMS_SMALL_ELEMENTS // k ** 2), len(sizes))
        groups = order[first:last]
        rank = torch.arange(k, device=counts.device)
        valid = rank < counts[groups, None]  # (g, k)
        index = (starts[groups, None] + rank).clamp_(max=len(keep) - 1)  # padding slots: any real box
        kept = greedy_nms_padded(boxes_px[index], valid, threshold=threshold, plus_one=plus_one)
        if k > max_keep:
            kept &= kept.cumsum(1) <= max_keep
        if most > limit:  # some groups were cut: settled if whole or with max_keep survivors
            done = (counts[groups] <= k) | (kept.sum(1) >= max_keep)  # (g,)
            kept &= done[:, None]
            settled[groups] = done
        keep[index[kept]] = True
        first = last
    return settled


def greedy_nms_padded(boxes_px: Tensor, valid: Tensor, *, threshold: float, plus_one: bool = True) -> Tensor:
    """Greedy NMS of groups padded to a common length k.

    boxes_px: (G, k, 4) pixel boxes, best first; valid: (G, k) bool. Returns keep (G, k).

    Box j survives iff no surviving box ranked above it has IoU > threshold with it. That
    rule determines box j from boxes 0..j-1, so iterating ``keep = valid & ~suppressed(keep)``
    from all True fixes one more leading box per round at least, and stops at the unique
    answer when nothing changes: a few rounds of one batched matrix product each, where the
    seed loops once per survivor.
    """
    # (i, j): box i ranks above box j and overlaps it; padding never survives, so never suppresses
    iou = pairwise_pixel_iou(boxes_px, boxes_px) if plus_one else pairwise_iou(boxes_px, boxes_px)
    suppresses = (iou > threshold).triu_(1).float()  # (G, k, k)
    keep = valid
    while True:
        new_keep = valid & (torch.bmm(keep.float()[:, None, :], suppresses)[:, 0] == 0)  # (G, k)
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep
