"""`ssdzoo predict`: images and videos -> detections streamed to disk, pictures with boxes drawn.

Inputs are files or folders (a folder means every image and video file under it, subfolders
included, hidden names left out). A file that can't be read is reported and skipped.

    decode + resize   ``workers`` loader processes, a few batches ahead of the network
    network + NMS     the main process, ``batch_size`` images at a time (``Predictor``); on the
                      CPU with at most (cores - workers) torch threads, so that the network's
                      threads don't wait for descheduled ones
    draw + save       ``workers`` more processes (a thread with ``workers`` 0) beside the network
    results           one line per input appended to detections.jsonl as each batch is done
                      (``predict_stream``), detections.json (COCO results) written at the end

Output names keep each input's path relative to the inputs' common folder (a folder given as
input is its own root), so ``a/bus.jpg`` and ``b/bus.jpg`` stay apart, and its format where
PIL writes it (JPEG, PNG, BMP, WebP, TIFF; PNG otherwise; videos as MP4, see ``video``).
``detections.json`` names each result by that output name. Boxes are drawn above
``draw_score``; the JSON files keep everything the predictor returns (scores above its
``min_score``). Every drawn file is written to a temporary name and renamed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .atomic import atomic_path, write_json
from .data.dataset import available_cores
from .engine.evaluate import coco_results
from .inference import ImageReadError, Predictor, load_image, preprocess
from .postprocess import POSTPROCESS_KEYS, Detections
from .predict_stream import JSONL_NAME, RUN_NAME, ResultStream, read_lines
from .visualize import DEFAULT_DRAW_SCORE, draw_detections
from .workers import process_pool

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
KEEP_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
               ".tif": "TIFF", ".tiff": "TIFF"}
JSON_NAME = "detections.json"
_IN_FLIGHT = 2  # batches being drawn and saved while the next one runs through the network


class InputFile(NamedTuple):
    """One input and where its results go."""

    path: Path  # as given (or found in a given folder)
    name: str  # its output name under the output folder (posix path), format suffix applied
    kind: str  # "image" or "video"


class PredictSummary(NamedTuple):
    images: int  # images predicted by this run
    resumed: int  # inputs already done by an earlier run (``resume``)
    written: list[Path]  # drawn images and videos this run wrote, in input order
    skipped: list[tuple[Path, str]]  # inputs that could not be read, with the reason
    num_detections: int  # rows in detections.json (every image of the folder's results)
    json_path: Path
    jsonl_path: Path
    videos: int = 0  # videos predicted by this run


def collect_inputs(paths: Sequence[str | Path], *, exclude: Optional[str | Path] = None) -> list[InputFile]:
    """Files as given (in order), each folder expanded to its image and video files (sorted by
    path, subfolders included, hidden names and anything under ``exclude`` left out), each with
    its output name: the path relative to the inputs' common folder."""
    excluded = Path(exclude).resolve() if exclude is not None else None
    found: list[tuple[Path, Path]] = []  # (file, root: the folder its name is relative to)
    for path in map(Path, paths):
        if path.is_dir():
            root = path.resolve()
            for file in sorted(_walk(path)):
                if excluded is None or not _is_under(file.resolve(), excluded):
                    found.append((file, root))
        elif path.is_file():
            found.append((path, path.resolve().parent))
        else:
            raise FileNotFoundError(f"no such image or video file or folder: {path}")
    roots = {root for _, root in found}
    common = Path(os.path.commonpath([str(r) for r in roots])) if roots else Path()
    inputs, seen, used = [], set(), {JSON_NAME, JSONL_NAME, RUN_NAME}
    for file, _ in found:
        resolved = file.resolve()
        if resolved in seen:  # the same file twice (a file and its folder): once
            continue
        seen.add(resolved)
        kind = "video" if file.suffix.lower() in VIDEO_SUFFIXES else "image"
        relative = PurePosixPath(resolved.relative_to(common).as_posix())
        if kind == "video":
            relative = relative.with_suffix(".mp4")
        elif file.suffix.lower() not in KEEP_FORMAT:
            relative = relative.with_suffix(".png")
        inputs.append(InputFile(file, _unique(relative, used), kind))
    return inputs


def collect_images(paths: Sequence[str | Path]) -> list[Path]:
    """The image files of ``paths`` (as ``collect_inputs`` finds them), videos left out."""
    return [f.path for f in collect_inputs(paths) if f.kind == "image"]


def _walk(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files += [Path(dirpath, f) for f in filenames if not f.startswith(".")
                  and f.lower().endswith(IMAGE_SUFFIXES + VIDEO_SUFFIXES)]
    return files


def _is_under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _unique(name: PurePosixPath, used: set[str]) -> str:
    """``name``, or ``stem_1.ext``, ``stem_2.ext`` ... when two inputs map to one output name."""
    candidate, k = str(name), 1
    while candidate in used or f"{PurePosixPath(candidate).with_suffix('')}.jsonl" in used:
        candidate, k = str(name.with_name(f"{name.stem}_{k}{name.suffix}")), k + 1
    used.add(candidate)
    if name.suffix == ".mp4":  # a video's frames go to NAME.jsonl beside it
        used.add(f"{PurePosixPath(candidate).with_suffix('')}.jsonl")
    return candidate


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


class _Item(NamedTuple):
    """A loader item: one decoded, preprocessed image (or why it couldn't be read)."""

    index: int
    image: Optional[np.ndarray]  # (3, H, W) float32 normalized
    image_hw: Optional[tuple[int, int]]
    original: Optional[np.ndarray]  # (h, w, 3) uint8, for drawing; None with draw off
    error: Optional[str]


class _Batch(NamedTuple):
    """Items collated in the worker. The network inputs are one tensor and the pictures to draw
    on one flat uint8 tensor: one shared-memory block each per batch, handed from the loader
    to this process and on to a drawing process without a copy (pickled arrays were measured
    slower for 640x480 pictures)."""

    indices: list[int]  # of the readable items
    images: torch.Tensor  # (N, 3, H, W)
    image_hw: torch.Tensor  # (N, 2) int64
    originals: Optional["_Pictures"]  # None with draw off
    errors: list[tuple[int, str]]  # (index, reason) of the unreadable ones


class _Pictures(NamedTuple):
    """A batch's decoded pictures, (h, w, 3) uint8 each, back to back in one tensor."""

    pixels: torch.Tensor  # (sum of h * w * 3,) uint8
    shapes: list[tuple[int, int]]  # (h, w) of each

    @classmethod
    def pack(cls, arrays: list[np.ndarray]) -> "_Pictures":
        flat = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.empty(0, np.uint8)
        return cls(torch.from_numpy(flat), [a.shape[:2] for a in arrays])

    def unpack(self) -> list[np.ndarray]:
        pixels, start, arrays = self.pixels.numpy(), 0, []
        for h, w in self.shapes:
            arrays.append(pixels[start:start + h * w * 3].reshape(h, w, 3))
            start += h * w * 3
        return arrays


class ImageFiles(Dataset):
    """Image files -> ``_Item``s, decoded and preprocessed (in the loader's workers)."""

    def __init__(self, files: Sequence[Path], cfg: "Config", *, keep_original: bool):
        self.files, self.cfg, self.keep_original = list(files), cfg, keep_original

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> _Item:
        try:
            array = load_image(self.files[i])
        except ImageReadError as err:
            return _Item(i, None, None, None, str(err))
        batch, image_hw = preprocess([array], self.cfg)
        return _Item(i, batch[0].numpy(), tuple(image_hw[0].tolist()), array if self.keep_original else None, None)


def _collate(items: list[_Item]) -> _Batch:
    ok = [item for item in items if item.error is None]
    images = torch.from_numpy(np.stack([item.image for item in ok])) if ok else torch.empty(0)
    image_hw = torch.tensor([item.image_hw for item in ok], dtype=torch.int64).reshape(-1, 2)
    pictures = _Pictures.pack([item.original for item in ok]) if ok and ok[0].original is not None else None
    return _Batch([item.index for item in ok], images, image_hw, pictures,
                  [(item.index, item.error) for item in items if item.error is not None])


def run_predict(predictor: Predictor, inputs: Sequence[str | Path], out_dir: str | Path, *,
                category_ids: Optional[Sequence[int]] = None, batch_size: int = 8, workers: int = 0,
                draw: bool = True, draw_score: float = DEFAULT_DRAW_SCORE, resume: bool = False,
                every: int = 1, progress: Optional[bool] = None, settings: Optional[dict] = None) -> PredictSummary:
    """Predict on every image and video of ``inputs`` into ``out_dir`` (layout in the module
    docstring). ``workers`` loader processes decode images (0: in this process); ``every``: one
    video frame in K; ``progress``: a bar (None: on a terminal). ``settings`` (e.g. the weights)
    join the predictor's in predict_run.json, which ``resume`` checks. Raises ValueError when no
    input could be read."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if every < 1:
        raise ValueError(f"--every {every}: must be at least 1")
    out_dir = Path(out_dir)
    files = collect_inputs(inputs, exclude=out_dir)
    if not files:
        raise ValueError(f"no image or video files in {', '.join(map(str, inputs))}")
    images = [f for f in files if f.kind == "image"]
    ids = dict(zip((f.name for f in images), image_ids([f.path for f in images])))
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = predictor.cfg
    run_settings = {"min_score": predictor.min_score, "nms_threshold": cfg.nms_threshold,
                    "max_boxes": cfg.max_boxes, "nms_plus_one": cfg.nms_plus_one,
                    **{key: getattr(cfg, key) for key in POSTPROCESS_KEYS}, "image_size": list(cfg.image_size),
                    "image_resize": cfg.image_resize, "mean": _listed(cfg.mean), "std": _listed(cfg.std),
                    "anchor_centres": cfg.anchor_centres, "classes": list(cfg.classes),
                    "category_ids": list(category_ids) if category_ids is not None else None,
                    "every": every, **(settings or {})}
    skipped: list[tuple[Path, str]] = []
    written: list[Path] = []
    with ResultStream(out_dir, run_settings, resume=resume) as stream:
        for name, line in stream.done.items():
            if "image_id" in line and ids.get(name, line["image_id"]) != line["image_id"]:
                raise ValueError(f"--resume: the inputs changed since the earlier run ({name} was image "
                                 f"{line['image_id']}, now {ids[name]}); run again without --resume")
        todo = [f for f in images if f.name not in stream.done]
        done_images = _predict_images(predictor, todo, ids, out_dir, stream, category_ids=category_ids,
                                      batch_size=batch_size, workers=workers, draw=draw, draw_score=draw_score,
                                      progress=progress, skipped=skipped, written=written)
        videos = [f for f in files if f.kind == "video" and f.name not in stream.done]
        done_videos = 0
        if videos:
            from .video import VideoReadError, predict_video

            for video in videos:
                try:
                    line = predict_video(predictor, video.path, out_dir=out_dir, name=video.name, every=every,
                                         batch_size=batch_size, draw=draw, draw_score=draw_score,
                                         category_ids=category_ids, progress=progress)
                except VideoReadError as err:
                    log.warning("skipping %s", err)
                    skipped.append((video.path, str(err)))
                    stream.append([{"file_name": video.name, "source": str(video.path), "error": str(err)}])
                    continue
                stream.append([line])
                done_videos += 1
                if draw:
                    written.append(out_dir / video.name)
        resumed = len(stream.done)
    if done_images + done_videos + resumed == 0:
        reasons = "; ".join(reason for _, reason in skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
        raise ValueError(f"no input could be read: {reasons}")
    json_path, count = write_coco_json(out_dir, [f.name for f in images])
    return PredictSummary(done_images, resumed, written, skipped, count, json_path, out_dir / JSONL_NAME,
                          done_videos)


def _listed(values: Optional[Sequence[float]]) -> Optional[list[float]]:
    return None if values is None else list(values)


def _predict_images(predictor: Predictor, todo: list[InputFile], ids: dict[str, int], out_dir: Path,
                    stream: ResultStream, *, category_ids, batch_size: int, workers: int, draw: bool,
                    draw_score: float, progress: Optional[bool], skipped: list, written: list) -> int:
    """The images of ``todo`` through loader -> network -> drawing -> stream; how many were read."""
    if not todo:
        return 0
    dataset = ImageFiles([f.path for f in todo], predictor.cfg, keep_original=draw)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                        prefetch_factor=2 if workers else None)
    classes = predictor.cfg.classes
    count = 0
    pending: list[tuple[list, list[dict]]] = []  # (save futures, the lines to write once saved)
    bar = tqdm(total=len(todo), unit="img", desc="predict", disable=None if progress is None else not progress)
    with _drawers(workers) as drawer, _network_threads(predictor, workers):
        for batch in loader:
            lines, detections_drawn, paths = [], [], []
            for index, error in batch.errors:
                log.warning("skipping %s", error)
                skipped.append((todo[index].path, error))
                lines.append({"file_name": todo[index].name, "source": str(todo[index].path), "error": error})
            if batch.indices:
                detections = predictor.predict_batch(batch.images, batch.image_hw)
                for index, image_hw, dets in zip(batch.indices, batch.image_hw, detections):
                    file = todo[index]
                    lines.append(_image_line(file, ids[file.name], image_hw, dets, category_ids))
                    if draw:
                        detections_drawn.append(Detections(*(t.numpy() for t in dets)))
                        paths.append(out_dir / file.name)
                count += len(batch.indices)
            written += paths
            futures = ([drawer.submit(_draw_and_save, batch.originals, detections_drawn, paths, classes, draw_score)]
                       if paths else [])
            pending.append((futures, lines))
            while len(pending) > _IN_FLIGHT:
                _finish(pending.pop(0), stream)
            bar.update(len(batch.indices) + len(batch.errors))
        while pending:
            _finish(pending.pop(0), stream)
    bar.close()
    return count


def default_workers(predictor: Predictor, *, draw: bool = True) -> int:
    """``--workers``' default: 2 processes; for a CPU network on 2 cores or fewer, 1 when
    drawing and none without. There the network's threads already use every core: a loader
    process beside them was measured slower than none, but drawing and saving in one beside the
    network pays for photo-sized pictures (README, Predict: measured)."""
    cores = available_cores()
    if predictor.device.type == "cpu" and cores <= 2:  # torch or onnxruntime on the CPU
        return 1 if draw and cores == 2 else 0
    return min(2, cores)


def _drawers(workers: int) -> concurrent.futures.Executor:
    """Where pictures are drawn and saved: ``workers`` processes, or a thread for 0. They use
    PIL and numpy only."""
    if workers == 0:
        return concurrent.futures.ThreadPoolExecutor(max_workers=1)
    return process_pool(workers)


@contextlib.contextmanager
def _network_threads(predictor: Predictor, workers: int):
    """At most (cores - workers) torch threads for a CPU network while workers run (restored)."""
    before = torch.get_num_threads()
    on_cpu = predictor.device.type == "cpu" and not hasattr(predictor.network, "session")
    if workers and on_cpu:
        torch.set_num_threads(min(before, max(1, available_cores() - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _finish(batch: tuple[list, list[dict]], stream: ResultStream) -> None:
    """Wait for a batch's pictures to be saved, then record its lines (a line means done)."""
    futures, lines = batch
    for future in futures:
        future.result()  # re-raises a failed save
    stream.append(lines)


def _image_line(file: InputFile, image_id: int, image_hw: torch.Tensor, detections, category_ids) -> dict:
    rows = coco_results([detections], [image_id], category_ids)
    return {"file_name": file.name, "source": str(file.path), "image_id": image_id,
            "height": int(image_hw[0]), "width": int(image_hw[1]),
            "detections": [{k: r[k] for k in ("category_id", "bbox", "score")} for r in rows]}


def _draw_and_save(pictures: _Pictures, detections: list[Detections], paths: list[Path], classes: Sequence[str],
                   draw_score: float) -> None:
    """Draw and save a batch's pictures."""
    for image, detections, path in zip(pictures.unpack(), detections, paths):
        save_image(draw_detections(image, detections, classes, min_score=draw_score), path)


def save_image(image: Image.Image, path: Path) -> None:
    """Save atomically in the format of ``path``'s suffix (JPEG at quality 95)."""
    image_format = KEEP_FORMAT.get(path.suffix.lower(), "PNG")
    options = {"quality": 95} if image_format == "JPEG" else {}
    with atomic_path(path, durable=False) as tmp, open(tmp, "wb") as f:
        image.save(f, format=image_format, **options)


def write_coco_json(out_dir: Path, names: Sequence[str]) -> tuple[Path, int]:
    """detections.json (COCO results: every image line of detections.jsonl, in ``names``'
    order) written atomically; (its path, its number of rows)."""
    lines = {line["file_name"]: line for line in read_lines(out_dir / JSONL_NAME)
             if "detections" in line}
    rows = [{"image_id": line["image_id"], "file_name": name, **det}
            for name in names if (line := lines.get(name)) is not None for det in line["detections"]]
    return write_json(out_dir / JSON_NAME, rows, indent=None, durable=False), len(rows)
