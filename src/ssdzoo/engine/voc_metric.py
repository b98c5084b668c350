"""Pascal VOC's detection metric: per-class AP at IoU 0.5, by the 2007 and the 2010+ rules.

Inputs are COCO-format ground truth and results (what ``coco_results`` and
``DetectionIndex.coco_ground_truth`` give), so any detections ssdzoo evaluates with COCOeval
can be scored this way too. The rules of the VOC devkit (VOCevaldet.m):

- per class, all detections of the split in descending score order; each is matched to the
  ground-truth box of its image and class it overlaps most (IoU, ``>= 0.5``): a true positive
  if that box is not yet taken, else a false positive (even if another box is free); a
  detection whose best box is "difficult" counts as neither; unmatched detections are false
  positives;
- recall is over the boxes that are not difficult (crowd regions count as difficult here);
- VOC2007: AP is the mean over recall 0, 0.1, ..., 1 of the highest precision at that recall
  or more (11 points); VOC2010 and later: the area under the precision envelope, at every
  recall the detections reach.

Boxes are continuous pixel corners (x, y, x + w, y + h); with the devkit's 1-based inclusive
corners converted as ``prepare voc`` converts them, its +1 pixel widths are these widths.
A class without ground truth has no AP (None) and is left out of the mean.
"""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple, Optional

import numpy as np

VOC_IOU = 0.5


class VocResult(NamedTuple):
    map07: Optional[float]  # mean of the classes' 11-point APs
    map10: Optional[float]  # mean of the classes' area APs
    per_class: dict[str, dict]  # name -> {"voc07_AP50", "voc10_AP50", "ground_truth", "detections"}


def voc_ap(recall: np.ndarray, precision: np.ndarray, *, eleven_point: bool) -> float:
    """AP of one class's recall and precision (in score order).

    >>> round(voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]), eleven_point=False), 4)
    0.8333
    >>> round(voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]), eleven_point=True), 4)
    0.8485
    """
    if eleven_point:
        points = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in np.linspace(0, 1, 11)]
        return float(np.mean(points))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope: best precision at this recall or more
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _xyxy(bbox_xywh: list) -> np.ndarray:
    boxes = np.asarray(bbox_xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def _iou(box_xyxy: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
    """(4,) and (G, 4) -> (G,)"""
    top_left = np.maximum(box_xyxy[:2], boxes_xyxy[:, :2])
    bottom_right = np.minimum(box_xyxy[2:], boxes_xyxy[:, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=1)
    union = (box_xyxy[2:] - box_xyxy[:2]).prod() + (boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]).prod(axis=1) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def voc_evaluation(ground_truth: dict, results: list[dict], *, iou_threshold: float = VOC_IOU) -> VocResult:
    """Per-class VOC AP (both rules) of COCO-format ``results`` against ``ground_truth``."""
    images = {img["id"] for img in ground_truth["images"]}
    gt = defaultdict(list)  # (category, image) -> [(xyxy, ignored)]
    for ann in ground_truth["annotations"]:
        ignored = bool(ann.get("difficult") or ann.get("iscrowd"))
        gt[(ann["category_id"], ann["image_id"])].append((ann["bbox"], ignored))
    dets = defaultdict(list)  # (category, image) -> [(score, bbox)]
    for row in results:
        if row["image_id"] in images:
            dets[(row["category_id"], row["image_id"])].append((row["score"], row["bbox"]))

    per_class = {}
    for category in sorted(ground_truth["categories"], key=lambda c: c["id"]):
        cid = category["id"]
        npos = sum(not ignored for (c, _), boxes in gt.items() if c == cid for _, ignored in boxes)
        scores, outcome = [], []  # outcome: 1 true positive, 0 false positive, -1 ignored
        for (c, image_id), found in dets.items():
            if c != cid:
                continue
            truth = gt.get((cid, image_id), [])
            truth_xyxy = _xyxy([b for b, _ in truth])
            ignored = np.array([i for _, i in truth], dtype=bool)
            taken = np.zeros(len(truth), dtype=bool)
            for score, bbox in sorted(found, key=lambda d: -d[0]):
                scores.append(score)
                if not len(truth):
                    outcome.append(0)
                    continue
                overlaps = _iou(_xyxy(bbox)[0], truth_xyxy)
                best = int(np.argmax(overlaps))
                if overlaps[best] < iou_threshold:
                    outcome.append(0)
                elif ignored[best]:
                    outcome.append(-1)
                elif not taken[best]:
                    taken[best] = True
                    outcome.append(1)
                else:
                    outcome.append(0)
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        outcome_sorted = np.asarray(outcome, dtype=np.int64)[order] if outcome else np.zeros(0, np.int64)
        outcome_sorted = outcome_sorted[outcome_sorted >= 0]
        entry = {"ground_truth": int(npos), "detections": int(len(scores)), "voc07_AP50": None, "voc10_AP50": None}
        if npos > 0:
            tp = np.cumsum(outcome_sorted == 1)
            fp = np.cumsum(outcome_sorted == 0)
            recall = tp / npos
            precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
            entry["voc07_AP50"] = voc_ap(recall, precision, eleven_point=True)
            entry["voc10_AP50"] = voc_ap(recall, precision, eleven_point=False)
        per_class[category["name"]] = entry

    def mean(key: str) -> Optional[float]:
        values = [e[key] for e in per_class.values() if e[key] is not None]
        return float(np.mean(values)) if values else None

    return VocResult(mean("voc07_AP50"), mean("voc10_AP50"), per_class)
