"""COCO-format json -> a ``SourceSplit``: COCO 2017 itself and any labelling tool's COCO export.

What real exports do, and what happens to it:
- category ids that start at 0 or have gaps: labels still follow ascending ids;
- categories no annotation uses: kept as classes and listed in summary.json, except Roboflow's
  parent category (no annotation, and the supercategory of every other category), which is
  not a class;
- ``file_name``s with sub-folders: read under the images folder; a name with folders that
  don't exist there is also looked for by its base name (exports that keep the tool's paths);
- ``segmentation`` missing or empty: not needed for boxes; ``area`` missing, empty or not
  positive: the box's w * h (what COCOeval's size ranges then use);
- images without annotations: background images, kept or not by the caller's choice.
The seed's conversion crashes on an unknown category; here annotations with an unknown
category or image, or a bbox that is not four numbers, are dropped and counted.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .index import SourceSplit, source_split


def annotation_path(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{split}.json"


def is_training_split(split: str) -> bool:
    """train2017 keeps crowd boxes; other splits (val2017) drop images with crowd annotations."""
    return split.startswith("train")


def read_coco_json(path: str | Path, images_dir: str | Path | None = None) -> SourceSplit:
    """Parse and validate a COCO instances file; a missing file or bad structure is an error
    naming the path and key. Image files are looked for under ``images_dir`` (default: the
    json's folder)."""
    path = Path(path)
    images_dir = Path(images_dir) if images_dir is not None else path.parent
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

    all_categories = _read_categories(raw["categories"], path)
    image_ids, file_names, heights, widths = _read_images(raw["images"], path)
    row_of = {image_id: row for row, image_id in enumerate(image_ids.tolist())}

    used: Counter = Counter()
    for ann in raw["annotations"]:
        if type(ann) is dict and type(ann.get("category_id")) is int:
            used[ann["category_id"]] += 1
    categories, not_classes = _classes(all_categories, used)
    _check_distinct_names(categories, path)
    label_of = {c["id"]: label for label, c in enumerate(categories, start=1)}

    dropped: Counter = Counter()
    dropped_at: list[dict] = []

    def drop(reason: str, why: str, position: int, ann: Any) -> None:
        dropped[reason] += 1
        ann_id = ann.get("id") if type(ann) is dict else None
        at = f"annotation id {ann_id}" if _is_int(ann_id) else f"annotation {position} (counted from 1)"
        dropped_at.append({"file": str(path), "at": at, "reason": why})

    annotated = np.zeros(len(image_ids), dtype=bool)
    rows, ids, labels, bboxes, areas, crowds = [], [], [], [], [], []
    for position, ann in enumerate(raw["annotations"], 1):  # plain type checks: once per annotation
        if type(ann) is not dict:
            drop("invalid_box", "not a JSON object", position, ann)
            continue
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        row = row_of.get(image_id) if _is_int(image_id) else None
        if row is None:
            drop("unknown_image", f"image_id {image_id!r} is not in images", position, ann)
            continue
        annotated[row] = True
        label = label_of.get(category_id) if _is_int(category_id) else None
        if label is None:
            drop("unknown_category", f"category_id {category_id!r} is not in categories", position, ann)
            continue
        bbox = ann.get("bbox")
        crowd = ann.get("iscrowd", 0)
        if not (type(bbox) is list and len(bbox) == 4 and _is_number(bbox[0]) and _is_number(bbox[1])
                and _is_number(bbox[2]) and _is_number(bbox[3])) or crowd not in (0, 1):
            # (NaN and infinite values are counted as not finite later)
            drop("invalid_box", f"bbox is not four numbers or iscrowd not 0/1: {str(bbox)[:60]}, "
                                f"iscrowd {str(crowd)[:10]}", position, ann)
            continue
        area = ann.get("area")
        rows.append(row)
        ids.append(ann.get("id") if _is_int(ann.get("id")) else None)
        labels.append(label)
        bboxes.append(bbox)
        areas.append(area if _is_number(area) and area > 0 else bbox[2] * bbox[3])
        crowds.append(int(crowd))
    del raw
    return source_split(
        origin={"format": "coco", "annotations": str(path), "images": str(images_dir)},
        categories=categories, image_ids=image_ids, file_names=file_names,
        image_paths=[str(resolve_image(images_dir, name)) for name in file_names],
        heights=heights, widths=widths, annotated=annotated, ann_rows=rows,
        ann_ids=_fill_missing_ids(ids), ann_labels=labels, ann_bbox_xywh=bboxes, ann_area=areas,
        ann_iscrowd=crowds, dropped=dict(dropped), not_classes=not_classes, dropped_at=dropped_at,
    )


def resolve_image(images_dir: Path, file_name: str) -> Path:
    """``images_dir / file_name``; if that is missing but the base name exists directly in
    ``images_dir`` (an export that kept its tool's folders), that file."""
    path = images_dir / file_name
    if not path.exists():
        flat = images_dir / Path(file_name).name
        if flat != path and flat.is_file():
            return flat
    return path


def _classes(categories: tuple[dict, ...], used: Counter) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """The categories that are classes, and those that are not (with the reason).

    Roboflow writes its project name as a category with no annotations whose name is the
    supercategory of every other category; it is a folder, not a class.
    """
    if len(categories) > 1:
        for parent in categories:
            others = [c for c in categories if c is not parent]
            if used[parent["id"]] == 0 and all(c.get("supercategory") == parent["name"] for c in others):
                note = {**parent, "reason": "no annotations, supercategory of all the others (Roboflow's "
                                            "parent category)"}
                return tuple(others), (note,)
    return categories, ()


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


def _check_distinct_names(categories: tuple[dict, ...], path: Path) -> None:
    """Class names identify classes (configs, checkpoints): two classes can't share one."""
    names = Counter(c["name"] for c in categories)
    twice = [name for name, n in names.items() if n > 1]
    if twice:
        raise ValueError(f"{path}: category name {twice[0]!r} appears twice (ids "
                         f"{[c['id'] for c in categories if c['name'] == twice[0]]})")


def _read_images(entries: list, path: Path) -> tuple[np.ndarray, tuple[str, ...], np.ndarray, np.ndarray]:
    ids, names, heights, widths = [], [], [], []
    for i, image in enumerate(entries):
        if not (isinstance(image, dict) and _is_int(image.get("id"))
                and isinstance(image.get("file_name"), str) and image["file_name"]):
            raise ValueError(f"{path}: images[{i}] needs an integer 'id' and a 'file_name'")
        ids.append(image["id"])
        names.append(image["file_name"])
        heights.append(image["height"] if _is_int(image.get("height")) and image["height"] > 0 else -1)  # -1: from
        widths.append(image["width"] if _is_int(image.get("width")) and image["width"] > 0 else -1)  # the file
    image_ids = np.asarray(ids, dtype=np.int64)
    if len(np.unique(image_ids)) != len(image_ids):
        duplicate = Counter(ids).most_common(1)[0][0]
        raise ValueError(f"{path}: image id {duplicate} appears twice")
    return image_ids, tuple(names), np.asarray(heights, np.int64), np.asarray(widths, np.int64)


def _fill_missing_ids(ids: list) -> list[int]:
    """Annotation ids, with ones after the largest for annotations that have none."""
    missing = [k for k, ann_id in enumerate(ids) if ann_id is None]
    if missing:
        next_id = 1 + max((i for i in ids if type(i) is int), default=0)
        for offset, k in enumerate(missing):
            ids[k] = next_id + offset
    return ids


_INT64 = 2**63


def _is_int(value: Any) -> bool:
    """A JSON integer an int64 holds (ids, sizes); true and false are not integers here."""
    return type(value) is int and -_INT64 <= value < _INT64


def _is_number(value: Any) -> bool:
    """A JSON number a float64 holds (coordinates, areas; NaN included: counted later)."""
    return type(value) is float or _is_int(value)
