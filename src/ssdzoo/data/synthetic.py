"""The embedded demo dataset: coloured shapes on textured backgrounds, as a COCO-format folder.

``make_synthetic_coco(out, seed=...)`` writes out/annotations/instances_{train,val}2017.json and
out/{train,val}2017/*.jpg (real JPEG files), so the demo runs the same code as COCO does.
``layout="voc"`` writes the same images and boxes as a Pascal VOC folder (Annotations/,
JPEGImages/, ImageSets/Main/{train,val}.txt) and ``layout="yolo"`` as an ultralytics dataset
(data.yaml, images/{train,val}/, labels/{train,val}/), to try ``ssdzoo prepare voc`` / ``yolo``.
Every image is a pure function of (seed, split, image number): the output is the same for any
number of workers.

What makes it a detection problem rather than a colour test: the class is the shape only
(circle, square, triangle); colours are drawn independently of the class; backgrounds carry
low-frequency colour gradients, faint lines and sensor-like noise; sizes are log-uniform from
small (20 px) to half the image, and objects may overlap (a later object partly hides an
earlier one, which stays at least half visible).
"""

from __future__ import annotations

import colorsys
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from ..atomic import atomic_folder, write_bytes, write_json
from ..workers import process_pool

SHAPES = ("circle", "square", "triangle")  # labels 1, 2, 3 (COCO category ids 1, 2, 3)
SPLITS = {"train2017": 0, "val2017": 1}  # split -> stream number in the seed
VAL_ID_OFFSET = 1_000_000  # image ids: train 1..N, val 1_000_001.., unique across splits
SUPERSAMPLE = 4  # shapes are drawn at 4x and averaged down: anti-aliased edges


@dataclass(frozen=True)
class SynthSpec:
    """Image and object statistics of the synthetic set (the defaults are the demo's)."""

    min_side: int = 160  # image width and height, each uniform in [min_side, max_side]
    max_side: int = 256
    max_objects: int = 6  # objects per image: geometric from 1 with this mean, at most max_objects
    mean_objects: float = 3.0
    min_object: float = 20.0  # object size (box side), log-uniform in [min_object, max_fraction x side]
    max_fraction: float = 0.5
    max_iou: float = 0.3  # overlap limits between any two objects' boxes
    max_hidden: float = 0.5  # at most this fraction of an earlier object's box under a later one
    jpeg_quality: tuple[int, int] = (80, 95)


LAYOUTS = ("coco", "voc", "yolo")


def make_synthetic_coco(
    out: str | Path, *, seed: int = 0, num_train: int = 3000, num_val: int = 300,
    spec: SynthSpec = SynthSpec(), workers: int = 1, progress: Optional[bool] = None,
    overwrite: bool = False, layout: str = "coco",
) -> dict:
    """Write the synthetic dataset ``out`` in ``layout`` (coco, voc or yolo); return counts per split.

    An existing non-empty ``out`` is an error unless ``overwrite``, which replaces it whole. The
    folder is built beside ``out`` and moved into place when complete.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    out = Path(out)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty: pass --overwrite to replace it whole, "
                              "or choose another folder")
    with atomic_folder(out) as staging:
        return _write_synthetic(staging, seed=seed, num_train=num_train, num_val=num_val, spec=spec,
                                workers=workers, progress=progress, layout=layout)


def _write_synthetic(out: Path, *, seed: int, num_train: int, num_val: int, spec: SynthSpec,
                     workers: int, progress: Optional[bool], layout: str) -> dict:
    if layout == "coco":
        (out / "annotations").mkdir()
    summary = {}
    for split, count in (("train2017", num_train), ("val2017", num_val)):
        start = time.perf_counter()
        folder = _image_folder(out, split, layout)
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [(seed, split, i, spec, str(folder)) for i in range(count)]
        bar = tqdm(total=count, desc=f"synth {split}", unit="img",
                   disable=None if progress is None else not progress)
        results = []
        if workers > 1:
            with process_pool(workers) as pool:
                for result in pool.map(_write_image, jobs, chunksize=16):
                    results.append(result)
                    bar.update()
        else:
            for job in jobs:
                results.append(_write_image(job))
                bar.update()
        bar.close()
        coco = _coco_json(results)
        if layout == "coco":
            write_json(out / "annotations" / f"instances_{split}.json", coco, indent=None)
        elif layout == "voc":
            _write_voc(out, split, coco)
        else:
            _write_yolo(out, split, coco)
        sizes = np.array([math.sqrt(a["bbox"][2] * a["bbox"][3]) for a in coco["annotations"]])
        summary[split] = {
            "images": count, "boxes": len(coco["annotations"]),
            "boxes_per_class": {name: sum(a["category_id"] == k for a in coco["annotations"])
                                for k, name in enumerate(SHAPES, start=1)},
            "small_boxes": int((sizes < 32).sum()),  # COCO's "small": area under 32^2
            "seconds": round(time.perf_counter() - start, 2),
        }
    return summary


def _short(split: str) -> str:
    return split.removesuffix("2017")  # VOC and YOLO name their splits train, val


def _image_folder(out: Path, split: str, layout: str) -> Path:
    return {"coco": out / split, "voc": out / "JPEGImages", "yolo": out / "images" / _short(split)}[layout]


def _write_voc(out: Path, split: str, coco: dict) -> None:
    """Annotations/{stem}.xml per image (corners 1-based, inclusive: xmin = x + 1, xmax = x + w,
    rounded to whole pixels) and ImageSets/Main/{split}.txt."""
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    stems = []
    for image in coco["images"]:
        stem = Path(image["file_name"]).stem
        stems.append(stem)
        objects = "".join(
            "<object><name>{}</name><difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin>"
            "<xmax>{}</xmax><ymax>{}</ymax></bndbox></object>".format(
                SHAPES[a["category_id"] - 1], round(a["bbox"][0]) + 1, round(a["bbox"][1]) + 1,
                round(a["bbox"][0] + a["bbox"][2]), round(a["bbox"][1] + a["bbox"][3]))
            for a in by_image.get(image["id"], []))
        xml = (f"<annotation><filename>{image['file_name']}</filename><size><width>{image['width']}</width>"
               f"<height>{image['height']}</height><depth>3</depth></size>{objects}</annotation>\n")
        write_bytes(out / "Annotations" / f"{stem}.xml", xml.encode("utf-8"), durable=False)
    write_bytes(out / "ImageSets" / "Main" / f"{_short(split)}.txt", "".join(f"{s}\n" for s in stems).encode())


def _write_yolo(out: Path, split: str, coco: dict) -> None:
    """labels/{split}/{stem}.txt per image (class cx cy w h, normalized) and data.yaml."""
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for image in coco["images"]:
        w, h = image["width"], image["height"]
        lines = "".join(
            f"{a['category_id'] - 1} {(a['bbox'][0] + a['bbox'][2] / 2) / w:.6f} "
            f"{(a['bbox'][1] + a['bbox'][3] / 2) / h:.6f} {a['bbox'][2] / w:.6f} {a['bbox'][3] / h:.6f}\n"
            for a in by_image.get(image["id"], []))
        write_bytes(out / "labels" / _short(split) / f"{Path(image['file_name']).stem}.txt", lines.encode(),
                    durable=False)
    names = "".join(f"  {k}: {name}\n" for k, name in enumerate(SHAPES))
    write_bytes(out / "data.yaml", f"path: .\ntrain: images/train\nval: images/val\nnames:\n{names}".encode())


def _write_image(job: tuple) -> tuple[dict, list[dict]]:
    seed, split, i, spec, folder = job
    rng = np.random.default_rng((seed, SPLITS[split], i))
    pixels, objects = render_image(rng, spec)
    image_id = i + 1 + (VAL_ID_OFFSET if split != "train2017" else 0)
    file_name = f"{image_id:012d}.jpg"
    buffer = io.BytesIO()
    quality = int(rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1))
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    path = Path(folder) / file_name
    write_bytes(path, buffer.getvalue(), durable=False)
    image = {"id": image_id, "file_name": file_name, "height": pixels.shape[0], "width": pixels.shape[1]}
    return image, objects


def _coco_json(results: list[tuple[dict, list[dict]]]) -> dict:
    images, annotations = [], []
    for image, objects in results:
        images.append(image)
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], **obj})
    categories = [{"id": k, "name": name, "supercategory": "shape"} for k, name in enumerate(SHAPES, 1)]
    return {"info": {"description": "ssdzoo synthetic shapes"}, "images": images,
            "annotations": annotations, "categories": categories}


def render_image(rng: np.random.Generator, spec: SynthSpec = SynthSpec()) -> tuple[np.ndarray, list[dict]]:
    """One image: (H, W, 3) uint8 and its objects as COCO annotation fields (no ids)."""
    height = int(rng.integers(spec.min_side, spec.max_side + 1))
    width = int(rng.integers(spec.min_side, spec.max_side + 1))
    canvas = _background(rng, height, width)
    count = min(spec.max_objects, int(rng.geometric(1.0 / spec.mean_objects)))
    placed: list[np.ndarray] = []  # (4,) xyxy float
    objects = []
    for _ in range(count):
        shape = int(rng.integers(len(SHAPES)))
        for _attempt in range(20):
            vertices, is_circle = _shape_outline(rng, shape, height, width, spec)
            box = np.array([*vertices.min(axis=0), *vertices.max(axis=0)])
            if _fits(box, placed, spec):
                break
        else:
            continue
        _paint(canvas, rng, vertices, is_circle, box)
        placed.append(box)
        x0, y0, x1, y1 = box
        objects.append({"category_id": shape + 1,
                        "bbox": [round(float(x0), 2), round(float(y0), 2),
                                 round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                        "area": round(float((x1 - x0) * (y1 - y0)), 2), "iscrowd": 0})
    return np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8), objects


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1]: a muted base colour, smooth colour blotches, faint lines, noise."""
    base = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.35), rng.uniform(0.25, 0.8)))
    grid = rng.normal(0.0, 0.12, size=(int(rng.integers(3, 8)), int(rng.integers(3, 8)), 3))
    blotches = Image.fromarray(((grid + 0.5) * 255).clip(0, 255).astype(np.uint8))
    smooth = np.asarray(blotches.resize((width, height), Image.Resampling.BICUBIC), np.float32) / 255 - 0.5
    canvas = base + smooth
    lines = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(lines)
    for _ in range(int(rng.integers(0, 6))):
        x0, x1 = rng.uniform(0, width, 2)
        y0, y1 = rng.uniform(0, height, 2)
        draw.line([(x0, y0), (x1, y1)], fill=int(rng.integers(40, 120)), width=int(rng.integers(1, 4)))
    line_shade = rng.choice([-1.0, 1.0]) * 0.15
    canvas = canvas + line_shade * (np.asarray(lines, np.float32) / 255)[..., None]
    canvas = canvas + rng.normal(0.0, rng.uniform(0.01, 0.05), size=canvas.shape)
    return canvas.astype(np.float32)


def _shape_outline(rng: np.random.Generator, shape: int, height: int, width: int,
                   spec: SynthSpec) -> tuple[np.ndarray, bool]:
    """Outline points (V, 2) x, y in pixels of an object wholly inside the image."""
    largest = spec.max_fraction * min(height, width)
    size = math.exp(rng.uniform(math.log(spec.min_object), math.log(largest)))
    if SHAPES[shape] == "circle":
        angles = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1) * size / 2
    elif SHAPES[shape] == "square":
        theta = rng.uniform(-math.pi / 12, math.pi / 12)  # up to 15 degrees
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) / 2
        points = _rotate(corners, theta) * size / (abs(math.cos(theta)) + abs(math.sin(theta)))
    else:
        theta = rng.uniform(0, 2 * math.pi)
        stretch = rng.uniform(0.8, 1.25)  # isosceles: apex height relative to equilateral
        angles = np.array([-math.pi / 2, math.pi / 6, 5 * math.pi / 6])
        corners = np.stack([np.cos(angles), np.sin(angles) * stretch], axis=1)
        points = _rotate(corners, theta)
        points = points / (points.max(axis=0) - points.min(axis=0)).max() * size
    span = points.max(axis=0) - points.min(axis=0)
    low = -points.min(axis=0)
    centre = np.array([rng.uniform(low[0], low[0] + width - span[0]),
                       rng.uniform(low[1], low[1] + height - span[1])])
    return points + centre, SHAPES[shape] == "circle"


def _rotate(points: np.ndarray, theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return points @ np.array([[c, s], [-s, c]])


def _fits(box: np.ndarray, placed: list[np.ndarray], spec: SynthSpec) -> bool:
    area = (box[2] - box[0]) * (box[3] - box[1])
    for other in placed:
        inter_w = min(box[2], other[2]) - max(box[0], other[0])
        inter_h = min(box[3], other[3]) - max(box[1], other[1])
        if inter_w <= 0 or inter_h <= 0:
            continue
        inter = inter_w * inter_h
        other_area = (other[2] - other[0]) * (other[3] - other[1])
        if inter / (area + other_area - inter) > spec.max_iou or inter / other_area > spec.max_hidden:
            return False
    return True


def _paint(canvas: np.ndarray, rng: np.random.Generator, vertices: np.ndarray, is_circle: bool,
           box: np.ndarray) -> None:
    """Blend a shaded, saturated object into ``canvas`` (in place) with an anti-aliased mask."""
    height, width, _ = canvas.shape
    x0, y0 = max(0, int(box[0]) - 1), max(0, int(box[1]) - 1)
    x1, y1 = min(width, int(math.ceil(box[2])) + 1), min(height, int(math.ceil(box[3])) + 1)
    mask = Image.new("L", ((x1 - x0) * SUPERSAMPLE, (y1 - y0) * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(mask)
    local = (vertices - [x0, y0]) * SUPERSAMPLE
    if is_circle:
        draw.ellipse([*local.min(axis=0), *local.max(axis=0)], fill=255)
    else:
        draw.polygon([tuple(p) for p in local], fill=255)
    alpha = np.asarray(mask.resize((x1 - x0, y1 - y0), Image.Resampling.BOX), np.float32)[..., None] / 255
    region = canvas[y0:y1, x0:x1]
    background = region.reshape(-1, 3).mean(axis=0)
    for _ in range(10):  # a colour clearly apart from what lies under the object
        colour = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.45, 1.0), rng.uniform(0.45, 1.0)))
        if np.linalg.norm(colour - background) > 0.35:
            break
    ys, xs = np.mgrid[0:y1 - y0, 0:x1 - x0].astype(np.float32)
    direction = rng.normal(size=2)
    ramp = (xs * direction[0] + ys * direction[1]) / (np.abs(direction).sum() * max(x1 - x0, y1 - y0))
    fill = colour + 0.15 * ramp[..., None] + rng.normal(0.0, 0.02, size=region.shape)
    canvas[y0:y1, x0:x1] = region * (1 - alpha) + fill * alpha
