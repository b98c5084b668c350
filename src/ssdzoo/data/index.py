"""Any labelled split -> the flat index the packed writer and the loader use; one set of rules.

Every reader (``coco.py``, ``voc.py``, ``yolo.py``) turns its format into a ``SourceSplit``:
images, categories and annotations as flat arrays. From there on nothing depends on the format:

- category ids map to contiguous labels 1..K in ascending id order (COCO 2017: the seed's order);
- a box [x, y, w, h] becomes corners clipped to the image and rounded to whole pixels (the seed's
  rounding); boxes that are not four finite numbers, or are under one pixel wide or high after
  clipping, are dropped and counted;
- an image whose annotations all end up dropped is dropped (``no_boxes``); an image the source
  lists with no annotation at all is a background image, kept only with ``keep_background``;
- with ``drop_crowd_images`` (the seed's rule for COCO 2017's val split) an image with a crowd
  annotation is dropped.

Everything per image or per box lives in numpy arrays (``DetectionIndex``), never in one Python
object per annotation: forked loader workers then share the index instead of each copying it
page by page as reference counts are touched (the known problem with COCO's 860k boxes).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Optional

import numpy as np
import pyarrow as pa

# reasons a box is not used for training (counted in summary.json under dropped_boxes)
BOX_KEPT, BOX_NOT_FINITE, BOX_TOO_SMALL = 0, 1, 2
MIN_BOX_SIDE = 1.0  # pixels, after clipping and rounding


@dataclasses.dataclass(frozen=True)
class SourceSplit:
    """One split of a labelled dataset as flat arrays, whatever format it was read from.

    Annotations are grouped by image (rows ``ann_offsets[i]:ann_offsets[i+1]`` belong to image
    ``i``) and include only those with a known image, a known category and a box of four numbers;
    ``dropped`` counts the others. With ``boxes_normalized`` (YOLO) the boxes are fractions of
    the image's width and height, known only once the file is read.
    """

    origin: dict  # what was read, for summary.json: {"format": ..., and the files or folders}
    categories: tuple[dict, ...]  # {id, name[, supercategory]}, ascending id; label = position + 1
    image_ids: np.ndarray  # (N,) int64, distinct
    file_names: tuple[str, ...]  # (N,) the name the index keeps (relative to the images folder)
    image_paths: tuple[str, ...]  # (N,) where each file is read from
    heights: np.ndarray  # (N,) int64; -1 where the source gives none
    widths: np.ndarray  # (N,) int64
    annotated: np.ndarray  # (N,) bool: the source lists some annotation for the image
    ann_offsets: np.ndarray  # (N + 1,) int64
    ann_ids: np.ndarray  # (A,) int64
    ann_labels: np.ndarray  # (A,) int64, 1..K
    ann_bbox_xywh: np.ndarray  # (A, 4) float64: pixels, or fractions with boxes_normalized
    ann_area: np.ndarray  # (A,) float64, pixels (w * h where the source gives none); NaN if normalized
    ann_iscrowd: np.ndarray  # (A,) int64
    ann_difficult: np.ndarray  # (A,) int64: VOC's "difficult" (ignored by evaluation)
    dropped: dict  # annotations not kept: unknown_category, unknown_image, invalid_box
    skipped: tuple[dict, ...] = ()  # images unusable before their file is read: {file, reason}
    not_classes: tuple[dict, ...] = ()  # categories of the source that are not classes, with why
    boxes_normalized: bool = False
    # where each dropped annotation was: {file, at ("line 3", "object 2", "annotation id 7"), reason}
    dropped_at: tuple[dict, ...] = ()
    label_files: tuple[str, ...] = ()  # (N,) each image's label file (YOLO .txt, VOC .xml); () for COCO
    ann_lines: Optional[np.ndarray] = None  # (A,) each annotation's line (YOLO) or object number (VOC)

    @property
    def category_ids(self) -> np.ndarray:
        return np.array([c["id"] for c in self.categories], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.image_ids)


def source_split(
    *, origin: dict, categories: tuple[dict, ...], image_ids, file_names, image_paths, heights, widths,
    annotated, ann_rows, ann_ids, ann_labels, ann_bbox_xywh, ann_area=None, ann_iscrowd=None,
    ann_difficult=None, dropped: Optional[dict] = None, skipped=(), not_classes=(),
    boxes_normalized: bool = False, dropped_at=(), label_files=(), ann_lines=None,
) -> SourceSplit:
    """A ``SourceSplit`` from per-annotation lists in any order (``ann_rows``: each
    annotation's image row); groups them by image, keeping their order within an image."""
    rows = np.asarray(ann_rows, dtype=np.int64).reshape(-1)
    order = np.argsort(rows, kind="stable")
    count = len(rows)
    bbox = np.asarray(ann_bbox_xywh, dtype=np.float64).reshape(-1, 4)
    if ann_area is None:
        area = np.full(count, np.nan) if boxes_normalized else bbox[:, 2] * bbox[:, 3]
    else:
        area = np.asarray(ann_area, dtype=np.float64)

    def column(values, dtype=np.int64):
        return np.zeros(count, dtype) if values is None else np.asarray(values, dtype=dtype).reshape(-1)

    image_ids = np.asarray(image_ids, dtype=np.int64)
    return SourceSplit(
        origin=origin, categories=tuple(categories), image_ids=image_ids,
        file_names=tuple(file_names), image_paths=tuple(map(str, image_paths)),
        heights=np.asarray(heights, dtype=np.int64), widths=np.asarray(widths, dtype=np.int64),
        annotated=np.asarray(annotated, dtype=bool),
        ann_offsets=offsets(np.bincount(rows, minlength=len(image_ids))),
        ann_ids=column(ann_ids)[order], ann_labels=column(ann_labels)[order], ann_bbox_xywh=bbox[order],
        ann_area=area[order], ann_iscrowd=column(ann_iscrowd)[order],
        ann_difficult=column(ann_difficult)[order], dropped=dict(dropped or {}), skipped=tuple(skipped),
        not_classes=tuple(not_classes), boxes_normalized=boxes_normalized, dropped_at=tuple(dropped_at),
        label_files=tuple(map(str, label_files)),
        ann_lines=None if ann_lines is None else column(ann_lines)[order],
    )


def annotation_place(source: SourceSplit, ann: int, row: int) -> dict:
    """Where annotation ``ann`` (of image ``row``) is in the source: {file, at}."""
    if source.label_files:
        kind = "line" if source.origin.get("format") == "yolo" else "object"
        return {"file": source.label_files[row], "at": f"{kind} {int(source.ann_lines[ann])}"}
    return {"file": str(source.origin.get("annotations", "")), "at": f"annotation id {int(source.ann_ids[ann])}"}


def ids_from_names(names: list[str]) -> np.ndarray:
    """Image ids for file stems: their numbers when every stem is a number (underscores
    ignored: VOC's 2008_000002 -> 2008000002, COCO's 000000397133 -> 397133) and no two are
    equal, else 1, 2, 3 ... in the given order.

    >>> ids_from_names(["000005", "2008_000002"]).tolist(), ids_from_names(["a", "b"]).tolist()
    ([5, 2008000002], [1, 2])
    """
    digits = [n.replace("_", "") for n in names]
    numeric = all(d.isdigit() and d.isascii() and len(d) <= 18 for d in digits)  # 18 digits fit int64
    if numeric and len({int(d) for d in digits}) == len(digits):
        return np.array([int(d) for d in digits], dtype=np.int64)
    return np.arange(1, len(names) + 1, dtype=np.int64)


def candidate_images(source: SourceSplit, *, drop_crowd_images: bool,
                     keep_background: bool) -> tuple[np.ndarray, dict]:
    """Which images can be kept before their files are read: (N,) bool, and counts of the others.

    An image with no usable annotation is kept only if the source lists none for it and
    ``keep_background``; with ``drop_crowd_images``, an image with a crowd annotation is dropped.
    """
    counts = np.diff(source.ann_offsets)
    has_boxes = counts > 0
    background = ~source.annotated & ~has_boxes
    crowd = np.zeros(len(counts), dtype=bool)
    if drop_crowd_images and len(source.ann_iscrowd):
        crowd_rows = np.repeat(np.arange(len(counts)), counts)[source.ann_iscrowd > 0]
        crowd[crowd_rows] = True
    keep = (has_boxes | (background & keep_background)) & ~crowd
    drops = {"no_boxes": int((~has_boxes & ~(background & keep_background)).sum()),
             "crowd": int((has_boxes & crowd).sum())}
    return keep, drops


def clean_boxes(coco_bbox_xywh: np.ndarray, *, height, width) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) COCO boxes in pixels -> (n, 4) float32 corners clipped to the image and rounded to
    whole pixels (the seed's rounding), and (n,) int8 status: BOX_KEPT, BOX_NOT_FINITE or
    BOX_TOO_SMALL (under MIN_BOX_SIDE wide or high after clipping). ``height`` and ``width`` are
    numbers or (n,) arrays (each box's image).

    >>> boxes, status = clean_boxes(np.array([[-5.0, 2.4, 20.0, 3.0], [9.6, 0.0, 0.3, 4.0]]),
    ...                             height=10, width=10)
    >>> boxes.tolist(), status.tolist()
    ([[0.0, 2.0, 10.0, 5.0], [10.0, 0.0, 10.0, 4.0]], [0, 2])
    """
    xywh = np.asarray(coco_bbox_xywh, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(xywh).all(axis=1)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    xyxy = np.nan_to_num(xyxy, nan=0.0, posinf=0.0, neginf=0.0)
    w, h = (np.broadcast_to(np.asarray(v, dtype=np.float64), (len(xywh),)) for v in (width, height))
    xyxy = np.rint(np.clip(xyxy, 0.0, np.stack([w, h, w, h], axis=1)))  # rint: round half to even, as Python's round
    big_enough = (xyxy[:, 2] - xyxy[:, 0] >= MIN_BOX_SIDE) & (xyxy[:, 3] - xyxy[:, 1] >= MIN_BOX_SIDE)
    status = np.where(~finite, BOX_NOT_FINITE, np.where(big_enough, BOX_KEPT, BOX_TOO_SMALL))
    return xyxy.astype(np.float32), status.astype(np.int8)


@dataclasses.dataclass(frozen=True)
class DetectionIndex:
    """The kept images of one split: what the loader and evaluation need, as flat arrays.

    Training boxes of image i: ``boxes_xyxy[box_offsets[i]:box_offsets[i+1]]`` (pixels, clipped,
    rounded; none for a background image). Ground truth for evaluation of image i: the ``ann_*``
    rows between ``ann_offsets[i]`` and ``ann_offsets[i+1]``, exactly as in the source (boxes
    dropped from training included, so COCOeval counts what it would count with the original json).
    """

    categories: tuple[dict, ...]
    image_ids: np.ndarray  # (N,) int64
    file_names: pa.StringArray  # (N,) one buffer, not N Python strings
    heights: np.ndarray  # (N,) int64, of the image as a viewer shows it (EXIF orientation applied)
    widths: np.ndarray  # (N,) int64
    box_offsets: np.ndarray  # (N + 1,) int64
    boxes_xyxy: np.ndarray  # (B, 4) float32 pixels
    labels: np.ndarray  # (B,) int64, 1..K
    ann_offsets: np.ndarray  # (N + 1,) int64
    ann_ids: np.ndarray  # (A,) int64
    ann_category_ids: np.ndarray  # (A,) int64, the source's category ids
    ann_bbox_xywh: np.ndarray  # (A, 4) float64, pixels
    ann_area: np.ndarray  # (A,) float64
    ann_iscrowd: np.ndarray  # (A,) int64
    ann_difficult: Optional[np.ndarray] = None  # (A,) int64, VOC's flag; None: none are

    def __len__(self) -> int:
        return len(self.image_ids)

    def boxes_of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(G, 4) float32 pixel corners and (G,) int64 labels of image ``i`` (views)."""
        start, stop = self.box_offsets[i], self.box_offsets[i + 1]
        return self.boxes_xyxy[start:stop], self.labels[start:stop]

    def difficult(self) -> np.ndarray:
        """(A,) int64: 1 for the annotations evaluation ignores as VOC's "difficult"."""
        return self.ann_difficult if self.ann_difficult is not None else np.zeros(len(self.ann_ids), np.int64)

    def coco_ground_truth(self) -> dict:
        """A COCO-format ground truth for exactly these images (see the class docstring).

        A "difficult" annotation (VOC) is marked ``iscrowd`` 1, which is how COCOeval ignores
        a region, and keeps ``"difficult": 1`` for the VOC metric.
        """
        names = self.file_names.to_pylist()
        images = [{"id": int(i), "width": int(w), "height": int(h), "file_name": n}
                  for i, w, h, n in zip(self.image_ids.tolist(), self.widths.tolist(),
                                        self.heights.tolist(), names)]
        owner = np.repeat(self.image_ids, np.diff(self.ann_offsets))
        difficult = self.difficult()
        iscrowd = np.maximum(self.ann_iscrowd, difficult)
        annotations = [
            {"id": a, "image_id": i, "category_id": c, "bbox": b, "area": ar, "iscrowd": z}
            for a, i, c, b, ar, z in zip(
                self.ann_ids.tolist(), owner.tolist(), self.ann_category_ids.tolist(),
                self.ann_bbox_xywh.tolist(), self.ann_area.tolist(), iscrowd.tolist())
        ]
        for k in np.flatnonzero(difficult).tolist():
            annotations[k]["difficult"] = 1
        return {"images": images, "annotations": annotations,
                "categories": [dict(c) for c in self.categories]}


class IndexBuilder:
    """Collects the kept images of a ``SourceSplit``, in any order, into a ``DetectionIndex``,
    counting what the rules drop."""

    def __init__(self, source: SourceSplit, *, keep_background: bool = False):
        self.source = source
        self.keep_background = keep_background
        self._rows: list[np.ndarray] = []
        self._sizes: list[np.ndarray] = []
        self._box_counts: list[np.ndarray] = []
        self._boxes: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self.dropped_boxes: Counter = Counter()
        self.dropped_images: Counter = Counter()
        self.dropped_at: list[dict] = []  # where each box dropped here was (annotation_place)

    def add_many(self, rows: np.ndarray, *, heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """Images ``rows`` of the source, whose files are ``heights`` x ``widths``: clean their
        boxes (one numpy pass) and keep those left with any (and the background images);
        returns the (n,) boxes kept and -1 for images dropped."""
        source = self.source
        rows = np.asarray(rows, dtype=np.int64)
        ann_rows, ann_offsets = ragged_take(source.ann_offsets, rows)
        counts = np.diff(ann_offsets)
        box_h, box_w = np.repeat(heights, counts), np.repeat(widths, counts)
        bbox_xywh = source.ann_bbox_xywh[ann_rows]
        if source.boxes_normalized:
            bbox_xywh = bbox_xywh * np.stack([box_w, box_h, box_w, box_h], axis=1)
        boxes_xyxy, status = clean_boxes(bbox_xywh, height=box_h, width=box_w)
        self.dropped_boxes["not_finite"] += int((status == BOX_NOT_FINITE).sum())
        self.dropped_boxes["too_small"] += int((status == BOX_TOO_SMALL).sum())
        keep = status == BOX_KEPT
        owner = np.repeat(np.arange(len(rows)), counts)
        for k in np.flatnonzero(~keep).tolist():
            why = ("not four finite numbers" if status[k] == BOX_NOT_FINITE else
                   f"under {MIN_BOX_SIDE:g} px wide or high after clipping to the image")
            self.dropped_at.append({**annotation_place(source, int(ann_rows[k]), int(rows[owner[k]])),
                                    "image": source.file_names[int(rows[owner[k]])], "reason": why})
        kept_counts = np.bincount(owner[keep], minlength=len(rows))
        background = (counts == 0) & ~source.annotated[rows] & self.keep_background
        kept_images = (kept_counts > 0) | background
        self.dropped_images["no_boxes"] += int((~kept_images).sum())
        self._rows.append(rows[kept_images])
        self._sizes.append(np.stack([heights, widths], axis=1)[kept_images])
        self._box_counts.append(kept_counts[kept_images])
        self._boxes.append(boxes_xyxy[keep])  # boxes of images without any are none of these
        self._labels.append(source.ann_labels[ann_rows][keep])
        return np.where(kept_images, kept_counts, -1)

    def finish(self) -> DetectionIndex:
        source = self.source
        rows = np.concatenate([np.zeros(0, np.int64), *self._rows]).astype(np.int64)
        sizes = np.concatenate([np.zeros((0, 2), np.int64), *self._sizes]).astype(np.int64)
        box_counts = np.concatenate([np.zeros(0, np.int64), *self._box_counts]).astype(np.int64)
        ann_rows, ann_offsets = ragged_take(source.ann_offsets, rows)
        owner = np.repeat(np.arange(len(rows)), np.diff(ann_offsets))
        bbox_xywh, area = source.ann_bbox_xywh[ann_rows], source.ann_area[ann_rows]
        if source.boxes_normalized:
            h, w = sizes[owner, 0].astype(np.float64), sizes[owner, 1].astype(np.float64)
            bbox_xywh = bbox_xywh * np.stack([w, h, w, h], axis=1)
            area = bbox_xywh[:, 2] * bbox_xywh[:, 3]
        # ground truth excludes only what COCOeval could not read: non-finite boxes
        finite = np.isfinite(bbox_xywh).all(axis=1)
        kept_per_image = np.bincount(owner[finite], minlength=len(rows))
        ann_rows = ann_rows[finite]
        difficult = source.ann_difficult[ann_rows]
        return DetectionIndex(
            categories=source.categories,
            image_ids=source.image_ids[rows],
            file_names=pa.array([source.file_names[r] for r in rows.tolist()], type=pa.string()),
            heights=sizes[:, 0].copy(),
            widths=sizes[:, 1].copy(),
            box_offsets=offsets(box_counts),
            boxes_xyxy=np.concatenate([np.zeros((0, 4), np.float32), *self._boxes]),
            labels=np.concatenate([np.zeros(0, np.int64), *self._labels]),
            ann_offsets=offsets(kept_per_image.astype(np.int64)),
            ann_ids=source.ann_ids[ann_rows],
            ann_category_ids=source.category_ids[source.ann_labels[ann_rows] - 1],
            ann_bbox_xywh=bbox_xywh[finite],
            ann_area=area[finite],
            ann_iscrowd=source.ann_iscrowd[ann_rows],
            ann_difficult=difficult if difficult.any() else None,
        )


def offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def ragged_take(row_offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element indices of the ragged rows ``rows`` (in that order) and their new offsets."""
    starts, counts = row_offsets[rows], row_offsets[rows + 1] - row_offsets[rows]
    new_offsets = offsets(counts)
    within = np.arange(new_offsets[-1]) - np.repeat(new_offsets[:-1], counts)
    return np.repeat(starts, counts) + within, new_offsets


def summary_counts(source: SourceSplit, early_drops: dict, builder: IndexBuilder) -> dict:
    """The filtering part of summary.json."""
    dropped_boxes = dict(builder.dropped_boxes)
    dropped_boxes["unknown_category"] = source.dropped.get("unknown_category", 0)
    dropped_boxes["invalid"] = source.dropped.get("invalid_box", 0)
    dropped_boxes["unknown_image"] = source.dropped.get("unknown_image", 0)
    dropped_images = {"no_boxes": early_drops["no_boxes"] + builder.dropped_images["no_boxes"],
                      "crowd": early_drops["crowd"]}
    return {"images_in_source": len(source.image_ids) + len(source.skipped),
            "annotations_in_source": int(len(source.ann_ids) + sum(source.dropped.values())),
            "dropped_images": dropped_images,
            "dropped_boxes": {k: int(v) for k, v in sorted(dropped_boxes.items())},
            "dropped_box_list": [*source.dropped_at, *builder.dropped_at]}


def class_counts(index: DetectionIndex) -> list[dict]:
    """Per category, in label order: {id, name, images, boxes} of the training boxes, plus
    ``difficult`` where the source flags any."""
    num_classes = len(index.categories)
    boxes = np.bincount(index.labels, minlength=num_classes + 1)[1:]
    owner = np.repeat(np.arange(len(index)), np.diff(index.box_offsets))
    pairs = np.unique(owner * (num_classes + 1) + index.labels) if len(owner) else np.zeros(0, np.int64)
    images = np.bincount(pairs % (num_classes + 1), minlength=num_classes + 1)[1:]
    difficult = index.difficult()
    label_of = {c["id"]: k for k, c in enumerate(index.categories)}
    hard = np.zeros(num_classes, np.int64)
    for category_id in index.ann_category_ids[difficult > 0].tolist():
        hard[label_of[category_id]] += 1
    rows = []
    for k, category in enumerate(index.categories):
        row = {"id": category["id"], "name": category["name"], "images": int(images[k]), "boxes": int(boxes[k])}
        if difficult.any():
            row["difficult"] = int(hard[k])
        rows.append(row)
    return rows


def check_size(source_hw: tuple[int, int], file_hw: tuple[int, int], orientation: int = 1) -> str | None:
    """A reason to skip the image if the source's size disagrees with the file's as a viewer
    shows it (EXIF ``orientation`` applied), else None."""
    source_h, source_w = source_hw
    if source_h < 0 or source_w < 0 or (source_h, source_w) == tuple(file_hw):
        return None
    reason = f"size mismatch: annotations say {source_w}x{source_h}, the image is {file_hw[1]}x{file_hw[0]}"
    if orientation in (5, 6, 7, 8) and (source_w, source_h) == (file_hw[0], file_hw[1]):
        reason += (f" as shown (EXIF orientation {orientation}; {source_w}x{source_h} as stored: the "
                   "annotations were made on the unrotated image)")
    return reason
