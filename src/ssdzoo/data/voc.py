"""Pascal VOC folders -> one ``SourceSplit`` per split (``ssdzoo prepare voc ROOT OUT``).

ROOT is ``VOCdevkit/`` (with ``VOC2007/``, ``VOC2012/`` or both) or one of those folders. Each
year folder has ``Annotations/{id}.xml``, ``JPEGImages/{id}.jpg`` and the split lists
``ImageSets/Main/{split}.txt`` (one id a line). A split of several years is their union (the
usual "07+12" training set is ``trainval`` of a VOCdevkit holding both).

- Boxes: VOC's corners are 1-based pixel indices, both ends inclusive, so pixels xmin..xmax
  cover [xmin - 1, xmax) in 0-based continuous coordinates: x = xmin - 1, w = xmax - xmin + 1.
- ``difficult`` objects are kept with their flag: trained on (as the original SSD's VOC
  recipe, ``use_difficult_gt``), ignored by evaluation (COCOeval: as crowd regions; the VOC
  metric: neither found nor missed).
- Classes: when every object name is one of VOC's 20, those found in VOC's standard order;
  else the names found, sorted; ``classes`` fixes them (objects of other names are dropped and
  counted). Every split of one run gets the same classes, from all of its annotations.
- An image whose annotation file is missing or unreadable is skipped and listed; one with no
  ``<object>`` is a background image.

XML is parsed with the standard library's expat-based parser (no DTDs fetched, entity
expansion bounded by expat >= 2.4).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from .index import SourceSplit, ids_from_names, source_split

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")  # the devkit's order
VOC_SPLITS = ("train", "val", "trainval", "test")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp")


@dataclass
class VocObject:
    name: str
    difficult: int
    bbox_xywh: Optional[tuple[float, float, float, float]]  # None: no readable bndbox


@dataclass
class VocAnnotation:
    """One Annotations/{id}.xml, or why it could not be used."""

    filename: Optional[str] = None
    width: int = -1
    height: int = -1
    objects: list[VocObject] = field(default_factory=list)
    error: Optional[str] = None


def year_folders(root: str | Path) -> list[Path]:
    """The VOC folders under ``root``: itself if it has Annotations/, else its VOC*/ (or
    VOCdevkit/VOC*/) folders that do."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"VOC folder not found: {root}")
    if (root / "Annotations").is_dir():
        return [root]
    for base in (root, root / "VOCdevkit"):
        years = sorted(p for p in base.glob("VOC*") if (p / "Annotations").is_dir())
        if years:
            return years
    raise FileNotFoundError(f"{root}: no VOC folder: expected {root / 'Annotations'} or "
                            f"{root / 'VOC2007' / 'Annotations'} (a VOCdevkit with VOC2007/, VOC2012/)")


def split_list(year: Path, split: str) -> Path:
    return year / "ImageSets" / "Main" / f"{split}.txt"


def available_splits(years: Sequence[Path]) -> list[str]:
    return [s for s in VOC_SPLITS if any(split_list(y, s).is_file() for y in years)]


def parse_annotation(path: Path) -> VocAnnotation:
    """Read one VOC xml; ``error`` says why it can't be used (the image is then skipped)."""
    if not path.is_file():
        return VocAnnotation(error=f"no annotation file {path.parent.name}/{path.name}")
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError, UnicodeDecodeError) as err:
        return VocAnnotation(error=f"annotation file not readable ({err})")
    node = tree.getroot()
    record = VocAnnotation(filename=_text(node, "filename"),
                           width=_positive_int(_text(node, "size/width")),
                           height=_positive_int(_text(node, "size/height")))
    for obj in node.iter("object"):
        name = (_text(obj, "name") or "").strip()
        difficult = 1 if (_text(obj, "difficult") or "0").strip() in ("1", "1.0", "true") else 0
        corners = [_number(_text(obj, f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        bbox = None
        if None not in corners:
            xmin, ymin, xmax, ymax = corners
            bbox = (xmin - 1.0, ymin - 1.0, xmax - xmin + 1.0, ymax - ymin + 1.0)  # 1-based, inclusive
        record.objects.append(VocObject(name, difficult, bbox))
    return record


def read_voc(root: str | Path, *, splits: Optional[Sequence[str]] = None,
             classes: Optional[Sequence[str]] = None) -> dict[str, SourceSplit]:
    """Every split of ``root`` (``splits`` None: those of train/val/trainval/test present)."""
    root = Path(root)
    years = year_folders(root)
    if splits is None:
        splits = available_splits(years)
        if not splits:
            raise FileNotFoundError(f"{root}: no split list: looked for ImageSets/Main/"
                                    f"{{{','.join(VOC_SPLITS)}}}.txt in {', '.join(str(y) for y in years)}")
    members: dict[str, list[tuple[Path, str]]] = {}
    for split in splits:
        lists = [split_list(y, split) for y in years if split_list(y, split).is_file()]
        if not lists:
            raise FileNotFoundError(f"{root}: no split {split!r}: {split_list(years[0], split)} not found")
        members[split] = [(lst.parents[2], line.split()[0]) for lst in lists
                          for line in lst.read_text(encoding="utf-8").splitlines() if line.strip()]
    keys = sorted({key for entries in members.values() for key in entries})
    records = {key: parse_annotation(key[0] / "Annotations" / f"{key[1]}.xml") for key in keys}
    names_found = {obj.name for r in records.values() for obj in r.objects if obj.name}
    if classes is not None:
        class_names = tuple(classes)
    elif names_found <= set(VOC_CLASSES):
        class_names = tuple(c for c in VOC_CLASSES if c in names_found)
    else:
        class_names = tuple(sorted(names_found))
    if not class_names:
        raise ValueError(f"{root}: no object names found in the annotations of {', '.join(splits)}")
    image_id_of = dict(zip(keys, ids_from_names([name for _, name in keys]).tolist()))
    return {split: _split(root, split, members[split], records, class_names, image_id_of) for split in splits}


def _split(root: Path, split: str, entries: list[tuple[Path, str]], records: dict, class_names: tuple[str, ...],
           image_id_of: dict) -> SourceSplit:
    label_of = {name: k for k, name in enumerate(class_names, start=1)}
    images, skipped = [], []
    ann = {"rows": [], "labels": [], "bbox": [], "difficult": [], "objects": []}
    dropped = {"unknown_category": 0, "invalid_box": 0}
    dropped_at, label_files = [], []
    seen = set()
    for year, name in entries:
        if (year, name) in seen:  # listed twice: once is enough
            continue
        seen.add((year, name))
        record = records[(year, name)]
        path = _image_path(year, name, record.filename)
        file_name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        if record.error:
            skipped.append({"file": file_name, "reason": record.error})
            continue
        row = len(images)
        images.append((image_id_of[(year, name)], file_name, path, record.height, record.width, bool(record.objects)))
        xml = year / "Annotations" / f"{name}.xml"
        label_files.append(xml)
        for number, obj in enumerate(record.objects, 1):
            label = label_of.get(obj.name)
            if label is None:
                dropped["unknown_category"] += 1
                dropped_at.append({"file": str(xml), "at": f"object {number}",
                                   "reason": f"class {obj.name!r} is not one of the classes"})
            elif obj.bbox_xywh is None:
                dropped["invalid_box"] += 1
                dropped_at.append({"file": str(xml), "at": f"object {number}",
                                   "reason": "bndbox is not four numbers"})
            else:
                ann["objects"].append(number)
                ann["rows"].append(row)
                ann["labels"].append(label)
                ann["bbox"].append(obj.bbox_xywh)
                ann["difficult"].append(obj.difficult)
    ids, file_names, paths, heights, widths, annotated = zip(*images) if images else ((),) * 6
    return source_split(
        origin={"format": "voc", "root": str(root), "lists": sorted({str(split_list(y, split)) for y, _ in entries})},
        categories=tuple({"id": k, "name": n} for k, n in enumerate(class_names, start=1)),
        image_ids=ids, file_names=file_names, image_paths=paths, heights=heights, widths=widths,
        annotated=annotated, ann_rows=ann["rows"], ann_ids=range(1, len(ann["rows"]) + 1),
        ann_labels=ann["labels"], ann_bbox_xywh=ann["bbox"], ann_difficult=ann["difficult"],
        dropped=dropped, skipped=skipped, dropped_at=dropped_at, label_files=label_files,
        ann_lines=ann["objects"],
    )


def _image_path(year: Path, name: str, xml_filename: Optional[str]) -> Path:
    """JPEGImages/{id}.jpg, else the xml's <filename>, else {id} with another image suffix."""
    folder = year / "JPEGImages"
    candidates = [folder / f"{name}.jpg"]
    if xml_filename:
        candidates.append(folder / Path(xml_filename.strip()).name)
    candidates += [folder / f"{name}{suffix}" for suffix in _IMAGE_SUFFIXES[1:]]
    return next((p for p in candidates if p.is_file()), candidates[0])


def _text(node: ET.Element, path: str) -> Optional[str]:
    found = node.find(path)
    return found.text if found is not None and found.text is not None else None


def _number(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _positive_int(text: Optional[str]) -> int:
    value = _number(text)
    return int(value) if value is not None and math.isfinite(value) and value > 0 and value == int(value) else -1
