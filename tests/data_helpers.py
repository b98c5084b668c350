"""Generated COCO-style fixtures for the data tests (tiny images, written into tmp_path)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = [{"id": 3, "name": "car", "supercategory": "vehicle"},
              {"id": 1, "name": "person", "supercategory": "person"},
              {"id": 7, "name": "train", "supercategory": "vehicle"}]  # unsorted on purpose
LABEL_OF = {1: 1, 3: 2, 7: 3}  # ascending COCO id -> label


def noise_image(seed: int, size: tuple[int, int] = (40, 32), mode: str = "RGB") -> Image.Image:
    """A textured image (width, height) that JPEG cannot shrink to a few bytes."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 255, size=(h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
    return image.convert(mode)


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def make_faulty_coco(root: Path) -> dict:
    """A COCO root full of faults. Returns what prepare must keep: {split: {file: [(label,
    x1, y1, x2, y2), ...]}}, the files it must skip, and the counts it must report."""
    train, val = root / "train2017", root / "val2017"
    train.mkdir(parents=True)
    val.mkdir()
    (root / "annotations").mkdir()
    files = {
        "good.jpg": encode(noise_image(1)),
        "gray.jpg": encode(noise_image(2, mode="L")),
        "cmyk.jpg": encode(noise_image(3, mode="CMYK")),
        "empty.jpg": b"",
        "truncated.jpg": encode(noise_image(4, size=(64, 48)))[:-400],
        "text.jpg": b"this is not an image\n" * 20,
        "nobox.jpg": encode(noise_image(5)),
        "allbad.jpg": encode(noise_image(6)),
        "crowd.jpg": encode(noise_image(7)),
        "rgb.png": encode(noise_image(8), "PNG"),
        "rgba.png": encode(noise_image(9, mode="RGBA"), "PNG"),
        "size.jpg": encode(noise_image(10)),
    }
    for name, data in files.items():
        (train / name).write_bytes(data)
    (train / "directory.jpg").mkdir()
    names = [*files, "missing.jpg", "directory.jpg"]
    images = [{"id": 100 + k, "file_name": n, "width": 40, "height": 32} for k, n in enumerate(names)]
    images[names.index("truncated.jpg")].update(width=64, height=48)
    images[names.index("size.jpg")].update(width=50, height=50)
    image_id = {n: 100 + k for k, n in enumerate(names)}

    anns = []

    def ann(name, category, bbox, **extra):
        anns.append({"id": 1000 + len(anns), "image_id": image_id.get(name, name), "category_id": category,
                     "bbox": bbox, "area": 1.0 if not isinstance(bbox, list) or len(bbox) < 4
                     or not all(isinstance(v, (int, float)) for v in bbox) else float(bbox[2] * bbox[3]),
                     "iscrowd": 0, **extra})

    ann("good.jpg", 1, [2.0, 3.0, 8.0, 9.0])  # kept: (1, 2, 3, 10, 12)
    ann("good.jpg", 3, [30.4, 20.0, 25.0, 30.0])  # clipped to (2, 30, 20, 40, 32)
    ann("good.jpg", 7, [5.0, 5.0, -3.0, 4.0])  # negative width: too small
    ann("good.jpg", 7, [5.0, 5.0, 0.4, 4.0])  # 0.4 px wide: too small
    ann("good.jpg", 7, [50.0, 40.0, 5.0, 5.0])  # wholly outside: too small after clipping
    ann("good.jpg", 7, [float("nan"), 1.0, 2.0, 2.0])  # not finite
    ann("good.jpg", 99, [1.0, 1.0, 5.0, 5.0])  # unknown category
    ann("good.jpg", 1, "abc")  # malformed box
    ann("good.jpg", 1, [1.0, 2.0, 3.0])  # malformed box
    ann(99999, 1, [1.0, 1.0, 5.0, 5.0])  # unknown image
    ann("gray.jpg", 3, [0.0, 0.0, 40.0, 32.0])
    ann("cmyk.jpg", 7, [10.6, 10.5, 5.0, 5.0])  # rint, half to even: (11, 10, 16, 16)
    ann("empty.jpg", 1, [1.0, 1.0, 5.0, 5.0])
    ann("truncated.jpg", 1, [1.0, 1.0, 5.0, 5.0])
    ann("text.jpg", 1, [1.0, 1.0, 5.0, 5.0])
    ann("missing.jpg", 1, [1.0, 1.0, 5.0, 5.0])
    ann("directory.jpg", 1, [1.0, 1.0, 5.0, 5.0])
    ann("allbad.jpg", 1, [1.0, 1.0, 0.2, 5.0])  # its only box is too small: image dropped
    ann("crowd.jpg", 1, [4.0, 4.0, 10.0, 10.0], iscrowd=1)  # train: an ordinary box
    ann("crowd.jpg", 3, [20.0, 10.0, 6.0, 6.0])
    ann("rgb.png", 3, [1.0, 1.0, 38.0, 30.0])
    ann("rgba.png", 1, [0.5, 0.5, 2.0, 2.0])  # rint: (0, 0, 2, 2)
    ann("size.jpg", 1, [1.0, 1.0, 5.0, 5.0])  # json says 50x50, the file is 40x32
    train_json = {"images": images, "annotations": anns, "categories": CATEGORIES}
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(train_json))

    val_files = {"v_good.jpg": encode(noise_image(11)), "v_crowd.jpg": encode(noise_image(12)),
                 "v_trunc.jpg": encode(noise_image(13, size=(64, 48)))[:-400]}
    for name, data in val_files.items():
        (val / name).write_bytes(data)
    val_images = [{"id": 500 + k, "file_name": n, "width": 40, "height": 32} for k, n in enumerate(val_files)]
    val_images[2].update(width=64, height=48)
    val_anns = [
        {"id": 1, "image_id": 500, "category_id": 7, "bbox": [3.0, 4.0, 20.0, 10.0], "area": 200.0, "iscrowd": 0},
        {"id": 2, "image_id": 501, "category_id": 1, "bbox": [3.0, 4.0, 20.0, 10.0], "area": 200.0, "iscrowd": 0},
        {"id": 3, "image_id": 501, "category_id": 1, "bbox": [1.0, 1.0, 8.0, 8.0], "area": 50.0, "iscrowd": 1},
        {"id": 4, "image_id": 502, "category_id": 1, "bbox": [1.0, 1.0, 8.0, 8.0], "area": 64.0, "iscrowd": 0},
    ]
    val_json = {"images": val_images, "annotations": val_anns, "categories": CATEGORIES}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(val_json))

    return {
        "keep": {
            "train2017": {
                "good.jpg": [(1, 2, 3, 10, 12), (2, 30, 20, 40, 32)],
                "gray.jpg": [(2, 0, 0, 40, 32)],
                "cmyk.jpg": [(3, 11, 10, 16, 16)],
                "crowd.jpg": [(1, 4, 4, 14, 14), (2, 20, 10, 26, 16)],
                "rgb.png": [(2, 1, 1, 39, 31)],
                "rgba.png": [(1, 0, 0, 2, 2)],
            },
            "val2017": {"v_good.jpg": [(3, 3, 4, 23, 14)]},
        },
        "skipped": {
            "train2017": {"empty.jpg": "empty", "truncated.jpg": "truncated", "text.jpg": "not an image",
                          "missing.jpg": "missing", "directory.jpg": "not", "size.jpg": "size mismatch"},
            "val2017": {"v_trunc.jpg": "truncated"},
        },
        "converted": {"gray.jpg": "L", "cmyk.jpg": "CMYK", "rgba.png": "RGBA"},
        "dropped_boxes": {"too_small": 4, "not_finite": 1, "unknown_category": 1, "invalid": 2,
                          "unknown_image": 1},
        "dropped_images": {"train2017": {"no_boxes": 2, "crowd": 0}, "val2017": {"no_boxes": 0, "crowd": 1}},
    }


# --- one small dataset, written in each layout (COCO export, Pascal VOC, YOLO) by hand-coded rules ---

CLASSES = ("bird", "cat", "dog")  # one order for all three formats: ascending COCO id, VOC's order, YOLO's ids
# file stem -> (width, height, [(class, x1, y1, x2, y2) in whole pixels, 0-based continuous corners])
SCENES = {
    "0001": (48, 40, [("cat", 2, 3, 20, 25), ("dog", 30, 10, 47, 39)]),
    "0002": (40, 32, [("bird", 0, 0, 40, 32)]),
    "0003": (56, 36, [("dog", 5, 6, 15, 16), ("cat", 20, 2, 50, 30), ("bird", 40, 20, 55, 35)]),
    "0004": (36, 44, []),  # a background image
}


def scene_image(stem: str) -> Image.Image:
    width, height, _ = SCENES[stem]
    return noise_image(int(stem), size=(width, height))


def write_coco_export(root: Path, *, roboflow: bool = True) -> Path:
    """Roboflow's layout (images beside train/_annotations.coco.json, category id 0 = the project,
    parent of the classes, ids from 1) or CVAT's (annotations/instances_default.json, images/ with
    a sub-folder, ids 0, 5, 9 with an unused id 7, no segmentation, area missing or 0)."""
    if roboflow:
        folder = root / "train"
        categories = [{"id": 0, "name": "animals", "supercategory": "none"}]
        categories += [{"id": k, "name": n, "supercategory": "animals"} for k, n in enumerate(CLASSES, start=1)]
        id_of = {n: k for k, n in enumerate(CLASSES, start=1)}
        json_path, prefix = folder / "_annotations.coco.json", ""
    else:
        folder = root / "images"
        categories = [{"id": 9, "name": "dog"}, {"id": 0, "name": "bird"}, {"id": 7, "name": "fish"},
                      {"id": 5, "name": "cat"}]
        id_of = {"bird": 0, "cat": 5, "dog": 9}
        json_path, prefix = root / "annotations" / "instances_default.json", "batch1/"
    (folder / prefix).mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for k, (stem, (width, height, boxes)) in enumerate(SCENES.items()):
        scene_image(stem).save(folder / prefix / f"{stem}.jpg", quality=95)
        images.append({"id": 10 + k, "file_name": f"{prefix}{stem}.jpg", "width": width, "height": height})
        for name, x1, y1, x2, y2 in boxes:
            ann = {"id": len(annotations) + 1, "image_id": 10 + k, "category_id": id_of[name],
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0}
            if roboflow:
                ann.update(area=(x2 - x1) * (y2 - y1), segmentation=[])
            elif len(annotations) % 2:
                ann["area"] = 0
            annotations.append(ann)
    json_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return json_path


def voc_object(name: str, x1: float, y1: float, x2: float, y2: float, difficult: int = 0) -> str:
    """VOC's corners are 1-based pixel indices, inclusive: pixels x1..x2-1 (0-based) are x1+1..x2."""
    return (f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def write_voc(year: Path, *, splits: dict[str, list[str]] | None = None, difficult: tuple = ()) -> Path:
    """A VOC2007-style folder of SCENES; ``difficult`` names (stem, box index) pairs flagged so."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (year / sub).mkdir(parents=True, exist_ok=True)
    for stem, (width, height, boxes) in SCENES.items():
        scene_image(stem).save(year / "JPEGImages" / f"{stem}.jpg", quality=95)
        objects = "".join(voc_object(n, x1, y1, x2, y2, int((stem, k) in difficult))
                          for k, (n, x1, y1, x2, y2) in enumerate(boxes))
        (year / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><folder>VOC2007</folder><filename>{stem}.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size><segmented>0</segmented>{objects}</annotation>")
    for split, stems in (splits or {"train": list(SCENES)}).items():
        (year / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    return year


def write_yolo(root: Path, *, names_as_dict: bool = False, yaml_dir: Path | None = None) -> Path:
    """An ultralytics dataset of SCENES: images/train, labels/train (normalized cx cy w h), a
    data.yaml in ``yaml_dir`` (default: root) whose ``path`` is relative to it. The background
    image's label file is missing; an empty one is written for nothing else."""
    (root / "images" / "train").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    for stem, (width, height, boxes) in SCENES.items():
        scene_image(stem).save(root / "images" / "train" / f"{stem}.jpg", quality=95)
        if not boxes:
            continue
        lines = "".join(f"{CLASSES.index(n)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                        f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n" for n, x1, y1, x2, y2 in boxes)
        (root / "labels" / "train" / f"{stem}.txt").write_text(lines)
    yaml_dir = yaml_dir or root
    yaml_dir.mkdir(parents=True, exist_ok=True)
    names = "".join(f"  {k}: {n}\n" for k, n in enumerate(CLASSES)) if names_as_dict else \
        "[" + ", ".join(CLASSES) + "]\n"
    path = yaml_dir / "data.yaml"
    relative = os.path.relpath(root, yaml_dir)
    path.write_text(f"path: {relative}\ntrain: images/train\nnames:{' ' if not names_as_dict else chr(10)}{names}")
    return path


# EXIF orientation -> the transpose that makes the stored pixels of an image that views as V
STORE_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                   7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def oriented_jpeg(viewed: Image.Image, orientation: int) -> bytes:
    """JPEG bytes whose pixels are stored turned, with the EXIF tag that shows them as ``viewed``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    viewed.transpose(STORE_TRANSPOSE[orientation]).save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()
