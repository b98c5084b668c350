"""Generated COCO-style fixtures for the data tests (tiny images, written into tmp_path)."""

from __future__ import annotations

import io
import json
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
