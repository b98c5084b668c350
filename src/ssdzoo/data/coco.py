"""COCO json -> flat arrays: the label map and the seed's conversion rules, made fault-tolerant.

The seed's rules (create_data of the MindCV SSD example), kept:
- category ids map to contiguous labels 1..K in ascending id order (COCO 2017: the seed's order);
- a box [x, y, w, h] becomes corners rounded to whole pixels;
- images left with no boxes are dropped;
- in evaluation splits, an image with any crowd annotation is dropped; in training splits crowd
  boxes are ordinary boxes.
What the seed lacks, added: boxes are clipped to the image; boxes that are not four finite
numbers, or are under one pixel wide or high after clipping, are dropped and counted;
annotations with an unknown category or image are dropped and counted (the seed crashes).

Everything per image or per box lives in numpy arrays (``DetectionIndex``), never in one Python
object per annotation: forked loader workers then share the index instead of each copying it
page by page as reference counts are touched (the known problem with COCO's 860k boxes).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

# reasons a box is not used for training (counted in summary.json under dropped_boxes)
BOX_KEPT, BOX_NOT_FINITE, BOX_TOO_SMALL = 0, 1, 2
MIN_BOX_SIDE = 1.0  # pixels, after clipping and rounding


def annotation_path(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{split}.json"


def is_training_split(split: str) -> bool:
    """train2017 keeps crowd boxes; other splits (val2017) drop images with crowd annotations."""
    return split.startswith("train")


@dataclasses.dataclass(frozen=True)
class CocoJson:
    """One COCO annotation file as flat arrays.

    Annotations are grouped by image (rows ``ann_offsets[i]:ann_offsets[i+1]`` belong to image
    ``i``, in file order) and include only those with a known image, a known category and a
    bbox of four numbers; ``dropped`` counts the others.
    """

    path: Path
    categories: tuple[dict, ...]  # as in the file (id, name, supercategory...), ascending id
    image_ids: np.ndarray  # (N,) int64
    file_names: tuple[str, ...]  # (N,)
    heights: np.ndarray  # (N,) int64; -1 where the file gives none
    widths: np.ndarray  # (N,) int64
    ann_offsets: np.ndarray  # (N + 1,) int64
    ann_ids: np.ndarray  # (A,) int64
    ann_labels: np.ndarray  # (A,) int64, 1..K
    ann_bbox_xywh: np.ndarray  # (A, 4) float64, pixels, as in the file
    ann_area: np.ndarray  # (A,) float64, as in the file (w * h where missing)
    ann_iscrowd: np.ndarray  # (A,) int64
    dropped: dict  # annotations not kept: unknown_category, unknown_image, invalid_box

    @property
    def category_ids(self) -> np.ndarray:
        return np.array([c["id"] for c in self.categories], dtype=np.int64)


def read_coco_json(path: str | Path) -> CocoJson:
    """Parse and validate a COCO instances file; a missing file or bad structure is an error
    naming the path and key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            raise ValueError(f"{path}: key {key!r} must be a list")

    categories = _read_categories(raw["categories"], path)
    label_of = {c["id"]: label for label, c in enumerate(categories, start=1)}
    image_ids, file_names, heights, widths = _read_images(raw["images"], path)
    row_of = {image_id: row for row, image_id in enumerate(image_ids.tolist())}

    dropped: Counter = Counter()
    rows, ids, labels, bboxes, areas, crowds = [], [], [], [], [], []
    numbers = (int, float)  # exact types: a JSON true/false is not a number here
    for ann in raw["annotations"]:  # plain type checks: this loop runs once per annotation
        if type(ann) is not dict:
            dropped["invalid_box"] += 1
            continue
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        row = row_of.get(image_id) if type(image_id) is int else None
        if row is None:
            dropped["unknown_image"] += 1
            continue
        label = label_of.get(category_id) if type(category_id) is int else None
        if label is None:
            dropped["unknown_category"] += 1
            continue
        bbox = ann.get("bbox")
        if not (type(bbox) is list and len(bbox) == 4 and type(bbox[0]) in numbers
                and type(bbox[1]) in numbers and type(bbox[2]) in numbers and type(bbox[3]) in numbers):
            dropped["invalid_box"] += 1
            continue
        area = ann.get("area")
        rows.append(row)
        ids.append(ann.get("id"))
        labels.append(label)
        bboxes.append(bbox)
        areas.append(area if type(area) in numbers else bbox[2] * bbox[3])
        crowds.append(1 if ann.get("iscrowd") else 0)
    del raw
    ids = _fill_missing_ids(ids)

    rows_array = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows_array, kind="stable")  # group by image, file order within an image
    counts = np.bincount(rows_array, minlength=len(image_ids))
    return CocoJson(
        path=path,
        categories=categories,
        image_ids=image_ids,
        file_names=file_names,
        heights=heights,
        widths=widths,
        ann_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        ann_ids=np.asarray(ids, dtype=np.int64)[order],
        ann_labels=np.asarray(labels, dtype=np.int64)[order],
        ann_bbox_xywh=np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)[order],
        ann_area=np.asarray(areas, dtype=np.float64)[order],
        ann_iscrowd=np.asarray(crowds, dtype=np.int64)[order],
        dropped=dict(dropped),
    )


def _read_categories(entries: list, path: Path) -> tuple[dict, ...]:
    seen: dict[int, dict] = {}
    for i, cat in enumerate(entries):
        if not (isinstance(cat, dict) and _is_int(cat.get("id")) and isinstance(cat.get("name"), str)):
            raise ValueError(f"{path}: categories[{i}] needs an integer 'id' and a string 'name'")
        if cat["id"] in seen:
            raise ValueError(f"{path}: category id {cat['id']} appears twice")
        seen[cat["id"]] = {k: v for k, v in cat.items() if k in ("id", "name", "supercategory")}
    if not seen:
        raise ValueError(f"{path}: no categories")
    return tuple(seen[k] for k in sorted(seen))


def _read_images(entries: list, path: Path) -> tuple[np.ndarray, tuple[str, ...], np.ndarray, np.ndarray]:
    ids, names, heights, widths = [], [], [], []
    for i, image in enumerate(entries):
        if not (isinstance(image, dict) and _is_int(image.get("id"))
                and isinstance(image.get("file_name"), str) and image["file_name"]):
            raise ValueError(f"{path}: images[{i}] needs an integer 'id' and a 'file_name'")
        ids.append(image["id"])
        names.append(image["file_name"])
        heights.append(image["height"] if _is_int(image.get("height")) and image["height"] > 0 else -1)
        widths.append(image["width"] if _is_int(image.get("width")) and image["width"] > 0 else -1)
    image_ids = np.asarray(ids, dtype=np.int64)
    if len(np.unique(image_ids)) != len(image_ids):
        duplicate = Counter(ids).most_common(1)[0][0]
        raise ValueError(f"{path}: image id {duplicate} appears twice")
    return image_ids, tuple(names), np.asarray(heights, np.int64), np.asarray(widths, np.int64)


def _fill_missing_ids(ids: list) -> list[int]:
    """Annotation ids, with ones after the largest for annotations that have none."""
    missing = [k for k, ann_id in enumerate(ids) if type(ann_id) is not int]
    if missing:
        next_id = 1 + max((i for i in ids if type(i) is int), default=0)
        for offset, k in enumerate(missing):
            ids[k] = next_id + offset
    return ids


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def candidate_images(coco: CocoJson, *, drop_crowd_images: bool) -> tuple[np.ndarray, dict]:
    """Which images can be kept before their files are read: (N,) bool, and counts of the others.

    An image with no usable annotation has no boxes; with ``drop_crowd_images``, an image with a
    crowd annotation is dropped (the seed's evaluation rule).
    """
    counts = np.diff(coco.ann_offsets)
    has_boxes = counts > 0
    crowd = np.zeros(len(counts), dtype=bool)
    if drop_crowd_images and len(coco.ann_iscrowd):
        crowd_rows = np.repeat(np.arange(len(counts)), counts)[coco.ann_iscrowd > 0]
        crowd[crowd_rows] = True
    keep = has_boxes & ~crowd
    return keep, {"no_boxes": int((~has_boxes).sum()), "crowd": int((has_boxes & crowd).sum())}


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
    """The kept images of one split: what the loader and COCO evaluation need, as flat arrays.

    Training boxes of image i: ``boxes_xyxy[box_offsets[i]:box_offsets[i+1]]`` (pixels, clipped,
    rounded). Ground truth for COCO evaluation of image i: the ``ann_*`` rows between
    ``ann_offsets[i]`` and ``ann_offsets[i+1]``, exactly as in the source file (boxes dropped
    from training included, so COCOeval counts what it would count with the original json).
    """

    categories: tuple[dict, ...]
    image_ids: np.ndarray  # (N,) int64
    file_names: pa.StringArray  # (N,) one buffer, not N Python strings
    heights: np.ndarray  # (N,) int64, of the image file
    widths: np.ndarray  # (N,) int64
    box_offsets: np.ndarray  # (N + 1,) int64
    boxes_xyxy: np.ndarray  # (B, 4) float32 pixels
    labels: np.ndarray  # (B,) int64, 1..K
    ann_offsets: np.ndarray  # (N + 1,) int64
    ann_ids: np.ndarray  # (A,) int64
    ann_category_ids: np.ndarray  # (A,) int64, COCO ids
    ann_bbox_xywh: np.ndarray  # (A, 4) float64
    ann_area: np.ndarray  # (A,) float64
    ann_iscrowd: np.ndarray  # (A,) int64

    def __len__(self) -> int:
        return len(self.image_ids)

    def boxes_of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(G, 4) float32 pixel corners and (G,) int64 labels of image ``i`` (views)."""
        start, stop = self.box_offsets[i], self.box_offsets[i + 1]
        return self.boxes_xyxy[start:stop], self.labels[start:stop]

    def coco_ground_truth(self) -> dict:
        """A COCO-format ground truth for exactly these images (see the class docstring)."""
        names = self.file_names.to_pylist()
        images = [{"id": int(i), "width": int(w), "height": int(h), "file_name": n}
                  for i, w, h, n in zip(self.image_ids.tolist(), self.widths.tolist(),
                                        self.heights.tolist(), names)]
        owner = np.repeat(self.image_ids, np.diff(self.ann_offsets))
        annotations = [
            {"id": a, "image_id": i, "category_id": c, "bbox": b, "area": ar, "iscrowd": z}
            for a, i, c, b, ar, z in zip(
                self.ann_ids.tolist(), owner.tolist(), self.ann_category_ids.tolist(),
                self.ann_bbox_xywh.tolist(), self.ann_area.tolist(), self.ann_iscrowd.tolist())
        ]
        return {"images": images, "annotations": annotations,
                "categories": [dict(c) for c in self.categories]}


class IndexBuilder:
    """Collects the kept images of a ``CocoJson``, in any order, into a ``DetectionIndex``,
    counting what the rules drop."""

    def __init__(self, coco: CocoJson):
        self.coco = coco
        self._rows: list[np.ndarray] = []
        self._sizes: list[np.ndarray] = []
        self._box_counts: list[np.ndarray] = []
        self._boxes: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self.dropped_boxes: Counter = Counter()
        self.dropped_images: Counter = Counter()

    def add_many(self, rows: np.ndarray, *, heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """Images ``rows`` of the json, whose files are ``heights`` x ``widths``: clean their
        boxes (one numpy pass) and keep those left with any; returns the (n,) boxes kept."""
        coco = self.coco
        ann_rows, offsets = _ragged_take(coco.ann_offsets, rows)
        counts = np.diff(offsets)
        boxes_xyxy, status = clean_boxes(coco.ann_bbox_xywh[ann_rows], height=np.repeat(heights, counts),
                                         width=np.repeat(widths, counts))
        self.dropped_boxes["not_finite"] += int((status == BOX_NOT_FINITE).sum())
        self.dropped_boxes["too_small"] += int((status == BOX_TOO_SMALL).sum())
        keep = status == BOX_KEPT
        owner = np.repeat(np.arange(len(rows)), counts)
        kept_counts = np.bincount(owner[keep], minlength=len(rows))
        has_boxes = kept_counts > 0
        self.dropped_images["no_boxes"] += int((~has_boxes).sum())
        self._rows.append(np.asarray(rows)[has_boxes])
        self._sizes.append(np.stack([heights, widths], axis=1)[has_boxes])
        self._box_counts.append(kept_counts[has_boxes])
        self._boxes.append(boxes_xyxy[keep])  # boxes of images without any are none of these
        self._labels.append(coco.ann_labels[ann_rows][keep])
        return kept_counts

    def finish(self) -> DetectionIndex:
        coco = self.coco
        rows = np.concatenate([np.zeros(0, np.int64), *self._rows]).astype(np.int64)
        sizes = np.concatenate([np.zeros((0, 2), np.int64), *self._sizes]).astype(np.int64)
        box_counts = np.concatenate([np.zeros(0, np.int64), *self._box_counts]).astype(np.int64)
        ann_rows, ann_offsets = _ragged_take(coco.ann_offsets, rows)
        # ground truth excludes only what COCOeval could not read: non-finite boxes
        finite = np.isfinite(coco.ann_bbox_xywh[ann_rows]).all(axis=1)
        ann_rows = ann_rows[finite]
        owner = np.repeat(np.arange(len(rows)), np.diff(ann_offsets))
        kept_per_image = np.bincount(owner[finite], minlength=len(rows))
        category_ids = coco.category_ids
        return DetectionIndex(
            categories=coco.categories,
            image_ids=coco.image_ids[rows],
            file_names=pa.array([coco.file_names[r] for r in rows.tolist()], type=pa.string()),
            heights=sizes[:, 0].copy(),
            widths=sizes[:, 1].copy(),
            box_offsets=_offsets(box_counts),
            boxes_xyxy=np.concatenate([np.zeros((0, 4), np.float32), *self._boxes]),
            labels=np.concatenate([np.zeros(0, np.int64), *self._labels]),
            ann_offsets=_offsets(kept_per_image.astype(np.int64)),
            ann_ids=coco.ann_ids[ann_rows],
            ann_category_ids=category_ids[coco.ann_labels[ann_rows] - 1],
            ann_bbox_xywh=coco.ann_bbox_xywh[ann_rows],
            ann_area=coco.ann_area[ann_rows],
            ann_iscrowd=coco.ann_iscrowd[ann_rows],
        )


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _ragged_take(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element indices of the ragged rows ``rows`` (in that order) and their new offsets."""
    starts, counts = offsets[rows], offsets[rows + 1] - offsets[rows]
    new_offsets = _offsets(counts)
    within = np.arange(new_offsets[-1]) - np.repeat(new_offsets[:-1], counts)
    return np.repeat(starts, counts) + within, new_offsets


def summary_counts(coco: CocoJson, early_drops: dict, builder: IndexBuilder) -> dict:
    """The filtering part of summary.json."""
    dropped_boxes = dict(builder.dropped_boxes)
    dropped_boxes["unknown_category"] = coco.dropped.get("unknown_category", 0)
    dropped_boxes["invalid"] = coco.dropped.get("invalid_box", 0)
    dropped_boxes["unknown_image"] = coco.dropped.get("unknown_image", 0)
    dropped_images = {"no_boxes": early_drops["no_boxes"] + builder.dropped_images["no_boxes"],
                      "crowd": early_drops["crowd"]}
    return {"images_in_json": len(coco.image_ids),
            "annotations_in_json": int(len(coco.ann_ids) + sum(coco.dropped.values())),
            "dropped_images": dropped_images,
            "dropped_boxes": {k: int(v) for k, v in sorted(dropped_boxes.items())}}


def check_size(json_hw: tuple[int, int], file_hw: tuple[int, int]) -> str | None:
    """A reason to skip the image if the json's size disagrees with the file's, else None."""
    json_h, json_w = json_hw
    if json_h < 0 or json_w < 0 or (json_h, json_w) == tuple(file_hw):
        return None
    return f"size mismatch: json {json_w}x{json_h}, file {file_hw[1]}x{file_hw[0]}"
