"""Network outputs -> final detections: decode, class scores, candidates, per-class NMS.

Per image and class: keep scores > min_score (optionally only the ``pre_nms_top_k`` best),
greedy NMS at nms_threshold in the seed's float64 pixel arithmetic (boxes x2 - x1 + 1 pixels
wide; x2 - x1 with ``nms_plus_one: false``, as TensorFlow and torchvision measure them), at most
max_boxes; then, with ``max_detections``, the best of all classes of an image by score. Scores
are the seed's sigmoid or, with ``score_activation: softmax``, torchvision's softmax over all
classes (background in column 0); ``clip_boxes`` clips decoded boxes to the image first.
With ``score_activation: softmax, pre_nms_top_k: 400, max_detections: 200, clip_boxes: true,
nms_plus_one: false`` and its thresholds this is torchvision's ``SSD.postprocess_detections``.

The one path from network outputs to detections: ``decode_outputs`` (boxes and scores), then
``postprocess`` / ``select_detections``, which eval, predict and the benchmark run, on the
device the outputs are on. All (image, class) groups of a batch go through NMS together, as
padded (groups, k) tensors, and usually only their k best-scored candidates: greedy NMS
decides a box from higher-scored boxes alone, so a group whose top k yield max_boxes survivors
is settled, and the rest are redone with 2k, 4k, ... candidates. No loop runs per image; the
host waits on the device a few times per batch (where tensor sizes follow the data), and the
detections of a batch cross to the host in one copy. ``graph_detections`` is the same rule in
the operators of an ONNX graph, for ``ssdzoo export --nms`` (why a second kernel: see there).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, NamedTuple, Optional

import torch
from torch import Tensor

from .boxes import clip_boxes, pairwise_iou, pairwise_pixel_iou
from .targets import decode

if TYPE_CHECKING:
    from .config import Config


class Detections(NamedTuple):
    """Final detections of one image."""

    boxes: Tensor  # (K, 4) xyxy in pixels of the original image
    scores: Tensor  # (K,)
    labels: Tensor  # (K,) int64, 1..num_classes-1; ordered by label, then score descending


# the config keys, beside min_score, nms_threshold, max_boxes and nms_plus_one, that change
# what post-processing keeps (an ONNX graph with NMS records them; predict --resume checks them)
POSTPROCESS_KEYS = ("score_activation", "pre_nms_top_k", "max_detections", "clip_boxes")

# Groups go through NMS as padded (groups, k, k) float64 IoU tables of at most this many
# elements (on the CPU 2 MiB: they stay in cache and malloc reuses them; on an accelerator
# 128 MiB: fewer, larger launches), and of at least the small size before groups are split by
# size (fewer, larger calls when the tables are small anyway).
_NMS_CHUNK_ELEMENTS_CPU = 1 << 18
_NMS_CHUNK_ELEMENTS_ACCELERATOR = 1 << 24
_NMS_SMALL_ELEMENTS = 1 << 14


def class_scores(logits: Tensor, cfg: "Config") -> Tensor:
    """(..., C) class logits -> (..., C) scores: sigmoid of each (the seed), or the softmax
    over all C with background in column 0 (``score_activation: softmax``, torchvision's)."""
    return logits.softmax(dim=-1) if cfg.score_activation == "softmax" else logits.sigmoid()


def decode_outputs(loc: Tensor, logits: Tensor, anchors_cxcywh: Tensor, cfg: "Config") -> tuple[Tensor, Tensor]:
    """The network's (loc (N, A, 4), logits (N, A, C)) -> (boxes_xyxy (N, A, 4) normalized,
    probs (N, A, C)), float32: the input of ``postprocess``."""
    return decode(loc.float(), anchors_cxcywh, cfg), class_scores(logits.float(), cfg)


def postprocess(boxes_xyxy: Tensor, probs: Tensor, cfg: "Config", image_hw: Tensor, *,
                min_score: Optional[float] = None, device: Optional[torch.device | str] = None) -> list[Detections]:
    """boxes_xyxy (N, A, 4) normalized, probs (N, A, C) with column 0 = background,
    image_hw (N, 2) original (height, width) -> N Detections in pixels, on ``device`` (None:
    where the inputs are). ``min_score`` replaces ``cfg.min_score``."""
    return select_detections(boxes_xyxy, probs, image_hw, **nms_settings(cfg, min_score=min_score), device=device)


def nms_settings(cfg: "Config", *, min_score: Optional[float] = None) -> dict:
    """``select_detections``' keyword arguments from a config."""
    return dict(min_score=cfg.min_score if min_score is None else min_score, nms_threshold=cfg.nms_threshold,
                max_per_class=cfg.max_boxes, plus_one=cfg.nms_plus_one, pre_nms_top_k=cfg.pre_nms_top_k,
                max_detections=cfg.max_detections, clip=cfg.clip_boxes)


def select_detections(
    boxes_xyxy: Tensor, probs: Tensor, image_hw: Tensor, *, min_score: float,
    nms_threshold: float, max_per_class: int, plus_one: bool = True, pre_nms_top_k: Optional[int] = None,
    max_detections: Optional[int] = None, clip: bool = False, device: Optional[torch.device | str] = None,
) -> list[Detections]:
    """``postprocess`` with its parameters spelled out (see there for shapes, and the module
    docstring for what each does). The work stays on the inputs' device, for all images at
    once; the detections cross to ``device`` in one copy."""
    num_images = len(probs)
    image_hw = torch.as_tensor(image_hw, device=probs.device).reshape(num_images, 2).double()
    if clip:
        boxes_xyxy = clip_boxes(boxes_xyxy)
    image_i, anchor_i, class_i, scores = ranked_candidates(probs[..., 1:], min_score=min_score)
    group = image_i * probs.shape[2] + class_i
    if pre_nms_top_k is not None:
        best = rank_in_group(group) < pre_nms_top_k
        image_i, anchor_i, class_i, scores, group = (t[best] for t in (image_i, anchor_i, class_i, scores, group))
    # the seed scales float32 boxes by integer sizes in float64, and runs NMS in float64
    boxes_px = (boxes_xyxy.double() * image_hw[:, None, [1, 0, 1, 0]])[image_i, anchor_i]  # (P, 4)
    keep = greedy_nms(boxes_px, group, threshold=nms_threshold, max_keep=max_per_class,
                      plus_one=plus_one).nonzero()[:, 0]
    if max_detections is not None:
        keep = best_per_image(keep, image_i[keep], scores[keep], max_detections)
    return split_by_image(image_i[keep], boxes_px[keep].float(), scores[keep], class_i[keep] + 1, num_images,
                          device=device)


def split_by_image(image_i: Tensor, boxes_px: Tensor, scores: Tensor, labels: Tensor, num_images: int, *,
                   device: Optional[torch.device | str] = None) -> list[Detections]:
    """Flat detections of a batch, grouped by image (image_i (D,) nondecreasing, boxes_px (D, 4)
    float32, scores (D,) float32, labels (D,) int64) -> one ``Detections`` per image on
    ``device`` (None: where they are), moved there in one copy."""
    per_image = torch.bincount(image_i, minlength=num_images).tolist()
    if device is not None and torch.device(device) != boxes_px.device:
        # one float64 table: float32 values and labels under 2^53 are exact in it
        table = torch.cat([boxes_px.double(), scores.double()[:, None], labels.double()[:, None]], dim=1).to(device)
        boxes_px, scores, labels = table[:, :4].float(), table[:, 4].float(), table[:, 5].long()
    return [Detections(b, s, c) for b, s, c in zip(
        boxes_px.split(per_image), scores.split(per_image), labels.split(per_image))]


def rank_in_group(group: Tensor) -> Tensor:
    """(P,) nondecreasing group ids -> (P,) each element's position within its group."""
    return torch.arange(len(group), device=group.device) - torch.searchsorted(group, group)


def best_per_image(index: Tensor, image_i: Tensor, scores: Tensor, limit: int) -> Tensor:
    """The ``limit`` best-scored of each image's detections.

    index, image_i, scores: (D,), ``index`` ascending. Returns the kept entries of ``index``,
    ascending. Equal scores at the limit keep the earlier index.
    """
    descending = (1 << 31) - 1 - scores.view(torch.int32).long()  # positive floats order like their bits
    order = torch.sort(image_i << 31 | descending, stable=True).indices
    ranked_image = image_i[order]
    return index[order[rank_in_group(ranked_image) < limit]].sort().values


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

    Groups go in chunks, largest first, each padded to its largest group. On the CPU a chunk
    holds the groups of more than half that size (or as many as make a small table), so that
    a few large groups do not pad every other one to their size; on an accelerator, as many
    groups as fit its larger table.
    """
    order = torch.argsort(counts, descending=True)
    counts_sorted = counts[order].tolist()
    most = counts_sorted[0]
    sizes = [min(count, limit) for count in counts_sorted]  # descending
    negated = [-size for size in sizes]  # ascending, for bisect
    settled = torch.ones_like(counts, dtype=torch.bool)
    chunk, by_size = _chunking(counts.device)
    first = 0
    while first < len(sizes):
        k = sizes[first]
        fits = max(1, chunk // k ** 2)
        # the sizes over k // 2; an accelerator pads every group of the chunk (launches cost more)
        similar = bisect.bisect_left(negated, -(k // 2), lo=first) if by_size else len(sizes)
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


def _chunking(device: torch.device) -> tuple[int, bool]:
    """(elements of a padded IoU table, whether a chunk holds groups of similar size) on ``device``."""
    return (_NMS_CHUNK_ELEMENTS_CPU, True) if device.type == "cpu" else (_NMS_CHUNK_ELEMENTS_ACCELERATOR, False)


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


# --- the same rule in operators an ONNX graph has (``ssdzoo export --nms``) -------------------
#
# ``greedy_nms`` decides how much work to do from the data, in Python (rounds of doubling
# candidates, chunks by group size, a fixed point reached in data-dependent steps), which a
# graph cannot express. ONNX has the seed's per-class greedy NMS as one operator,
# NonMaxSuppression; ``graph_detections`` builds the rest (scaling, clipping, top-k candidates,
# the per-image cap) from fixed-shape tensor ops around it. In PyTorch that operator is the
# custom op ``ssdzoo::nms_per_class``, run by ``greedy_nms`` itself, so the graph's PyTorch
# form gives ``select_detections``' detections. onnxruntime's operator measures IoU in float32
# (``greedy_nms`` in float64): the two can disagree only where an IoU lies within float32
# rounding of the threshold (tests/test_postprocess_graph.py checks them equal).


def graph_detections(
    boxes_xyxy: Tensor, probs: Tensor, image_hw: Tensor, *, min_score: float, nms_threshold: float,
    max_per_class: int, plus_one: bool = True, pre_nms_top_k: Optional[int] = None,
    max_detections: Optional[int] = None, clip: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``select_detections`` as a graph (torch.export-able, with a dynamic batch).

    boxes_xyxy (N, A, 4) normalized, probs (N, A, C), image_hw (N, 2) float32 -> flat detections
    of the whole batch: image_i (D,) int64, boxes_px (D, 4) float32 pixels, scores (D,),
    labels (D,) int64 in 1..C-1; grouped by image (within an image by label and score
    descending, or by score descending with ``max_detections``).
    """
    if clip:
        boxes_xyxy = clip_boxes(boxes_xyxy)
    boxes_px = boxes_xyxy * image_hw.to(boxes_xyxy.dtype)[:, None, [1, 0, 1, 0]]  # (N, A, 4)
    scores = probs[:, :, 1:].transpose(1, 2)  # (N, K, A): background dropped
    num_classes, num_anchors = scores.shape[1:]
    if pre_nms_top_k is not None and pre_nms_top_k < num_anchors:
        # every other score of the class set to 0, which no threshold >= 0 keeps
        best = scores.topk(pre_nms_top_k, dim=2).indices  # (N, K, k)
        scores = torch.zeros_like(scores).scatter(2, best, scores.gather(2, best))
    selected = nms_per_class(boxes_px, scores, max_per_class, nms_threshold, min_score, plus_one)
    image_i, class_i, box_i = selected.unbind(dim=1)
    if max_detections is not None and max_detections < num_classes * num_anchors:
        # the kept scores as a dense (N, K * A) table, its best per image; kept scores are > 0
        kept = torch.zeros_like(scores).flatten().index_put(  # zeros_like keeps N symbolic
            ((image_i * num_classes + class_i) * num_anchors + box_i,), scores[image_i, class_i, box_i])
        kept = kept.view(-1, num_classes * num_anchors)  # (N, K * A)
        top_scores, top_slots = kept.topk(max_detections, dim=1)  # (N, M)
        image_i, rank = torch.nonzero(top_scores > 0, as_tuple=True)
        slot = top_slots[image_i, rank]
        class_i, box_i = slot // num_anchors, slot % num_anchors
    return image_i, boxes_px[image_i, box_i], scores[image_i, class_i, box_i], class_i + 1


@torch.library.custom_op("ssdzoo::nms_per_class", mutates_args=())
def nms_per_class(boxes_px: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float,
                  score_threshold: float, plus_one: bool) -> Tensor:
    """ONNX NonMaxSuppression with the seed's pixel convention: boxes (N, A, 4) xyxy pixels,
    scores (N, K, A) -> selected (D, 3) int64 rows (image, class, box), grouped by image and
    class, scores descending.

    Per image and class: scores > score_threshold, greedy NMS suppressing IoU > iou_threshold,
    at most max_per_class boxes; ``plus_one``: boxes x2 - x1 + 1 wide. Run by ``greedy_nms``.
    """
    image_i, box_i, class_i, _ = ranked_candidates(scores.transpose(1, 2), min_score=score_threshold)
    keep = greedy_nms(boxes_px.double()[image_i, box_i], image_i * scores.shape[1] + class_i,
                      threshold=iou_threshold, max_keep=max_per_class, plus_one=plus_one)
    return torch.stack([image_i[keep], class_i[keep], box_i[keep]], dim=1)


@nms_per_class.register_fake
def _nms_per_class_fake(boxes_px, scores, max_per_class, iou_threshold, score_threshold, plus_one):
    count = torch.library.get_ctx().new_dynamic_size()  # data-dependent number of detections
    return boxes_px.new_empty((count, 3), dtype=torch.int64)


def nms_per_class_onnx(boxes_px, scores, max_per_class: int, iou_threshold: float, score_threshold: float,
                       plus_one: bool):
    """The ONNX node for ``nms_per_class`` (a ``torch.onnx.export`` custom translation). IoU is
    symmetric in x and y, so the operator's y-first corner layout reads xyxy boxes correctly;
    the +1 convention is the boxes extended one pixel right and down."""
    from onnxscript import opset18 as op

    if plus_one:
        boxes_px = op.Add(boxes_px, op.Constant(value_floats=[0.0, 0.0, 1.0, 1.0]))
    return op.NonMaxSuppression(
        boxes_px, scores, op.Constant(value_int=max_per_class),
        op.Constant(value_float=iou_threshold), op.Constant(value_float=score_threshold),
        center_point_box=0)
