"""The seed's per-image numpy algorithms, re-implemented from their description
(tests/golden/README.md) for speed comparisons only: ssdzoo never calls these.

- ``seed_encode``: a Python loop over ground truths, each one a pass of IoU over all anchors.
- ``seed_postprocess``: per class, a score threshold and greedy NMS in numpy with the
  seed's +1 pixel convention.
"""

from __future__ import annotations

import numpy as np


def seed_encode(gt_boxes_yxyx: np.ndarray, gt_labels: np.ndarray, anchors_cyxhw: np.ndarray,
                anchors_yxyx: np.ndarray, *, threshold: float = 0.5,
                prior_scaling: tuple[float, float] = (0.1, 0.2)) -> tuple[np.ndarray, np.ndarray]:
    """One image: (G, 4) y1 x1 y2 x2 and (G,) labels -> (A, 4) offsets (dy, dx, dh, dw), (A,) labels."""
    num_anchors = len(anchors_yxyx)
    y1, x1, y2, x2 = (anchors_yxyx[:, i] for i in range(4))
    anchor_area = (x2 - x1) * (y2 - y1)
    best_score = np.zeros(num_anchors, np.float32)
    matched_box = np.zeros((num_anchors, 4), np.float32)
    matched_label = np.zeros(num_anchors, np.int64)
    for box, label in zip(gt_boxes_yxyx, gt_labels):
        h = np.maximum(np.minimum(y2, box[2]) - np.maximum(y1, box[0]), 0.0)
        w = np.maximum(np.minimum(x2, box[3]) - np.maximum(x1, box[1]), 0.0)
        inter = h * w
        iou = inter / (anchor_area + (box[2] - box[0]) * (box[3] - box[1]) - inter)
        iou[np.argmax(iou)] = 2.0
        take = (iou > threshold) & (iou > best_score)
        best_score = np.where(take, iou, best_score)
        matched_label = np.where(take, label, matched_label)
        matched_box = np.where(take[:, None], box, matched_box)
    loc = np.zeros((num_anchors, 4), np.float32)
    pos = np.nonzero(matched_label)[0]
    boxes = matched_box[pos]
    centre, size = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
    anchors = anchors_cyxhw[pos]
    loc[pos, :2] = (centre - anchors[:, :2]) / (anchors[:, 2:] * prior_scaling[0])
    loc[pos, 2:] = np.log(np.maximum(size / anchors[:, 2:], 1e-6)) / prior_scaling[1]
    return loc, matched_label


def seed_nms(boxes_yxyx: np.ndarray, scores: np.ndarray, *, threshold: float, max_boxes: int) -> list[int]:
    """Greedy NMS of one class, pixel boxes measured with width x2 - x1 + 1."""
    y1, x1, y2, x2 = (boxes_yxyx[:, i] for i in range(4))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        if len(keep) >= max_boxes:
            break
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[best] + areas[rest] - inter) <= threshold]
    return keep


def seed_postprocess(boxes_yxyx_norm: np.ndarray, probs: np.ndarray, image_hw: tuple[int, int], *,
                     min_score: float, nms_threshold: float, max_boxes: int) -> np.ndarray:
    """One image -> (D, 6) rows [class, x, y, w, h (pixels), score], class ascending."""
    height, width = image_hw
    rows = []
    for c in range(1, probs.shape[1]):
        mask = probs[:, c] > min_score
        if not mask.any():
            continue
        scores = probs[mask, c]
        boxes = boxes_yxyx_norm[mask] * [height, width, height, width]
        for i in seed_nms(boxes, scores, threshold=nms_threshold, max_boxes=max_boxes):
            y1, x1, y2, x2 = boxes[i]
            rows.append([c, x1, y1, x2 - x1, y2 - y1, scores[i]])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)
