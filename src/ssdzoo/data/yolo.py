"""YOLO (ultralytics) datasets -> one ``SourceSplit`` per split (``ssdzoo prepare yolo DATA.yaml OUT``).

The layout ultralytics documents: a data.yaml with

    path: ../datasets/shapes     # the dataset root; relative to the yaml's folder (default: that folder)
    train: images/train          # relative to path: a folder of images (searched recursively),
    val: images/val              #   a .txt file listing images, or a list of either
    test:                        # optional
    names: [circle, square]      # or {0: circle, 1: square}; class ids are the indices / keys

and for every image ``.../images/.../x.jpg`` a label file ``.../labels/.../x.txt`` (the last
``images`` folder of the path becomes ``labels``), one object a line: ``class cx cy w h``,
normalized to [0, 1] by the image's width and height. A line of more than five numbers is a
polygon (``class x1 y1 x2 y2 ...``, ultralytics' segment labels): its bounding box is used.

- An empty or missing label file means a background image (no objects).
- A line that is not numbers, or of an impossible length, is dropped and counted; so is a
  class id outside ``names``. A label file that is not text skips its image (listed).
- Category ids are YOLO's class ids; labels follow them in ascending order (label = id + 1
  for the usual 0..K-1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import yaml

from .index import SourceSplit, ids_from_names, source_split

YOLO_SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_data_yaml(path: str | Path) -> tuple[dict, Path, tuple[dict, ...]]:
    """The yaml's mapping, the dataset root, and its categories ({id, name}, ascending id)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"YOLO data file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with path, train, val and names")
    root = Path(data.get("path") or ".")
    root = root if root.is_absolute() else (path.parent / root)
    names = data.get("names")
    if isinstance(names, list):
        pairs = list(enumerate(names))
    elif isinstance(names, dict):
        pairs = sorted(names.items(), key=lambda kv: kv[0] if isinstance(kv[0], int) else -1)
    else:
        raise ValueError(f"{path}: key 'names' must be a list of class names or a mapping id: name")
    for key, name in pairs:
        if not (isinstance(key, int) and not isinstance(key, bool) and key >= 0 and isinstance(name, str) and name):
            raise ValueError(f"{path}: names: {key!r}: {name!r} is not a class id (0, 1, ...) and a name")
    if len({name for _, name in pairs}) != len(pairs):
        raise ValueError(f"{path}: names lists a class name twice")
    if "nc" in data and data["nc"] != len(pairs):
        raise ValueError(f"{path}: nc is {data['nc']} but names lists {len(pairs)} classes")
    return data, root, tuple({"id": key, "name": name} for key, name in pairs)


def read_yolo(data_yaml: str | Path, *, splits: Optional[Sequence[str]] = None) -> dict[str, SourceSplit]:
    """Every split of the data.yaml (``splits`` None: those of train/val/test it names)."""
    data_yaml = Path(data_yaml)
    data, root, categories = read_data_yaml(data_yaml)
    if splits is None:
        splits = [s for s in YOLO_SPLITS if data.get(s)]
        if not splits:
            raise ValueError(f"{data_yaml}: names no split (keys {', '.join(YOLO_SPLITS)})")
    result = {}
    for split in splits:
        if not data.get(split):
            raise ValueError(f"{data_yaml}: no split {split!r} (keys: {', '.join(map(str, data))})")
        images = split_images(data[split], root, data_yaml)
        if not images:
            raise ValueError(f"{data_yaml}: split {split!r} has no images: nothing with an image suffix in "
                             f"{', '.join(_entry_paths(data[split], root))}")
        result[split] = _split(data_yaml, root, split, images, categories)
    return result


def split_images(entry, root: Path, data_yaml: Path) -> list[Path]:
    """The image files of one split entry: folders (recursively), .txt lists, or a list of them."""
    files: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        path = Path(str(item))
        path = path if path.is_absolute() else root / path
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.suffix == ".txt" and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line:
                    listed = Path(line)
                    files.append(listed if listed.is_absolute() else path.parent / listed)
        else:
            raise FileNotFoundError(f"{data_yaml}: {item}: no such image folder or list ({path})")
    return files


def _entry_paths(entry, root: Path) -> list[str]:
    """The folders or lists a split entry names, as paths."""
    return [str(Path(str(item)) if Path(str(item)).is_absolute() else root / str(item))
            for item in (entry if isinstance(entry, list) else [entry])]


def label_path(image: Path) -> Path:
    """ultralytics' rule: the last "images" folder of the path becomes "labels", suffix .txt."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _split(data_yaml: Path, root: Path, split: str, images: list[Path], categories: tuple[dict, ...]) -> SourceSplit:
    label_of = {c["id"]: k for k, c in enumerate(categories, start=1)}
    file_names = [p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in images]
    annotated, skipped, kept, dropped_at = [], [], [], []
    ann = {"rows": [], "labels": [], "bbox": [], "lines": []}
    dropped = {"unknown_category": 0, "invalid_box": 0}
    for image, file_name in zip(images, file_names):
        labels = label_path(image)
        lines, error = _label_lines(labels)
        if error:
            skipped.append({"file": file_name, "reason": error})
            continue
        row = len(kept)
        kept.append((image, file_name))
        annotated.append(bool(lines))
        for number, line in lines:
            parsed = _parse_line(line)
            if parsed is None:
                dropped["invalid_box"] += 1
                dropped_at.append({"file": str(labels), "at": f"line {number}",
                                   "reason": f"not 'class cx cy w h' or a polygon: {line.strip()[:60]!r}"})
                continue
            class_id, bbox = parsed
            if class_id not in label_of:
                dropped["unknown_category"] += 1
                dropped_at.append({"file": str(labels), "at": f"line {number}",
                                   "reason": f"class {class_id} is not in {data_yaml.name}'s names"})
                continue
            ann["lines"].append(number)
            ann["rows"].append(row)
            ann["labels"].append(label_of[class_id])
            ann["bbox"].append(bbox)
    paths = [p for p, _ in kept]
    return source_split(
        origin={"format": "yolo", "data": str(data_yaml), "root": str(root)},
        categories=categories, image_ids=ids_from_names([p.stem for p in paths]),
        file_names=[n for _, n in kept], image_paths=paths, heights=[-1] * len(kept), widths=[-1] * len(kept),
        annotated=annotated, ann_rows=ann["rows"], ann_ids=range(1, len(ann["rows"]) + 1),
        ann_labels=ann["labels"], ann_bbox_xywh=ann["bbox"], dropped=dropped, skipped=skipped,
        boxes_normalized=True, dropped_at=dropped_at, label_files=[label_path(p) for p in paths],
        ann_lines=ann["lines"],
    )


def _label_lines(path: Path) -> tuple[list[tuple[int, str]], Optional[str]]:
    """The non-blank lines of a label file with their numbers (none if it is missing), or why it
    can't be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], None
    except (UnicodeDecodeError, OSError) as err:
        return [], f"label file {path.name} not readable ({type(err).__name__})"
    return [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()], None


def _parse_line(line: str) -> Optional[tuple[int, tuple[float, float, float, float]]]:
    """``class cx cy w h`` (or a polygon) -> (class id, normalized x, y, w, h); None if malformed."""
    fields = line.split()
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return None
    if not values or not math.isfinite(values[0]) or values[0] != int(values[0]):
        return None
    class_id = int(values[0])
    numbers = values[1:]
    if len(numbers) == 4:
        cx, cy, w, h = numbers
        return class_id, (cx - w / 2, cy - h / 2, w, h)
    if len(numbers) >= 6 and len(numbers) % 2 == 0:  # a polygon of three or more points
        xs, ys = numbers[0::2], numbers[1::2]
        return class_id, (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
    return None
