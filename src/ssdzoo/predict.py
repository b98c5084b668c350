"""`ssdzoo predict`: image files -> pictures with their detections drawn + one COCO results JSON.

Inputs are files or folders (a folder means every image file directly in it). A file that is
not a readable image is skipped with a message naming it. Outputs, in the output folder:
each image with boxes, class names and scores drawn (same format for .jpg/.jpeg/.png inputs,
PNG otherwise), and ``detections.json`` in COCO results format, each row
{"image_id", "file_name", "category_id", "bbox": [x, y, w, h] pixels, "score"}.
Every file is written to a temporary name and renamed, so no half-written file is left.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional, Sequence

from PIL import Image

from .atomic import atomic_path
from .engine.evaluate import coco_results
from .inference import ImageReadError, Predictor, load_image
from .visualize import draw_detections

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_KEEP_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


class PredictSummary(NamedTuple):
    written: list[Path]  # drawn images, in input order
    skipped: list[Path]  # inputs that were not readable images
    num_detections: int
    json_path: Path


def collect_images(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given (in order), each folder expanded to its image files (sorted by name)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such image file or folder: {path}")
    return files


def image_ids(files: Sequence[Path]) -> list[int]:
    """COCO image ids: the file names' numbers when every name is a distinct number (COCO's
    000000397133.jpg -> 397133), else 1, 2, 3 ... in input order."""
    stems = [f.stem for f in files]
    if all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(files) + 1))


def read_category_ids(path: str | Path, cfg: "Config") -> list[int]:
    """The dataset's category id of each label 1..num_classes-1, from a JSON file: either that
    list of ids, or a COCO annotation file whose category names match cfg.classes."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from err
    if isinstance(data, dict) and isinstance(data.get("categories"), list):
        by_name = {c["name"]: int(c["id"]) for c in data["categories"]}
        missing = [name for name in cfg.classes[1:] if name not in by_name]
        if missing:
            raise ValueError(f"{path}: no category named {', '.join(map(repr, missing[:5]))}")
        return [by_name[name] for name in cfg.classes[1:]]
    if isinstance(data, list) and len(data) == cfg.num_classes - 1 and all(isinstance(v, int) for v in data):
        return data
    raise ValueError(f"{path}: expected a list of {cfg.num_classes - 1} category ids or a COCO "
                     "annotation file with 'categories'")


def run_predict(predictor: Predictor, inputs: Sequence[str | Path], out_dir: str | Path, *,
                category_ids: Optional[Sequence[int]] = None, batch_size: int = 8,
                progress: Optional[Callable[[int, int], None]] = None) -> PredictSummary:
    """Predict on every image in ``inputs``, write the drawn images and detections.json."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    files = collect_images(inputs)
    if not files:
        raise ValueError(f"no image files in {', '.join(map(str, inputs))}")
    ids = image_ids(files)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    used_names: set[str] = set()
    written, skipped, results = [], [], []
    for start in range(0, len(files), batch_size):
        chunk = []
        for file, image_id in zip(files[start:start + batch_size], ids[start:start + batch_size]):
            try:
                chunk.append((file, image_id, load_image(file)))
            except ImageReadError as err:
                log.warning("skipping %s", err)
                skipped.append(file)
        if chunk:
            detections = predictor.predict([image for _, _, image in chunk], batch_size=batch_size)
            results += coco_results(detections, [image_id for _, image_id, _ in chunk], category_ids,
                                    file_names=[file.name for file, _, _ in chunk])
            for (file, image_id, image), dets in zip(chunk, detections):
                drawn = draw_detections(image, dets, predictor.cfg.classes)
                written.append(_save_image(drawn, out_dir, file, used_names))
        if progress is not None:
            progress(min(start + batch_size, len(files)), len(files))
    json_path = out_dir / "detections.json"
    _atomic_write(json_path, lambda f: f.write(json.dumps(results).encode("utf-8")))
    return PredictSummary(written, skipped, len(results), json_path)


def _save_image(image: Image.Image, out_dir: Path, source: Path, used_names: set[str]) -> Path:
    """Save under the source's name (made unique within this run), keeping JPEG/PNG."""
    suffix = source.suffix.lower() if source.suffix.lower() in _KEEP_FORMAT else ".png"
    name, k = f"{source.stem}{suffix}", 1
    while name in used_names:
        name, k = f"{source.stem}_{k}{suffix}", k + 1
    used_names.add(name)
    path = out_dir / name
    options = {"quality": 95} if _KEEP_FORMAT.get(suffix, "PNG") == "JPEG" else {}
    _atomic_write(path, lambda f: image.save(f, format=_KEEP_FORMAT.get(suffix, "PNG"), **options))
    return path


def _atomic_write(path: Path, write: Callable) -> None:
    """Write through ``write(file)``; the file appears whole under ``path`` or not at all."""
    with atomic_path(path, durable=False) as tmp, open(tmp, "wb") as f:
        write(f)
