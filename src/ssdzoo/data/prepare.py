"""`ssdzoo prepare`: any labelled dataset -> one packed split folder per split.

Sources (one reader each, all feeding ``pack_split``): a COCO 2017 root (``prepare_coco``), any
COCO-format export (``prepare_coco_export``), Pascal VOC (``prepare_voc``) and YOLO
(``prepare_yolo``). Per split: the reader gives flat arrays (``index.SourceSplit``), what the
rules drop is dropped before any file is read, then each remaining image is checked, decoded
and (for grayscale/CMYK) converted in worker processes while the main process writes shards in
source order. The output is the same for any number of workers. The split is built in a
staging folder next to OUT/{split} and moved into place only when complete, so an interrupted
run leaves the previous dataset (or nothing) in place.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from itertools import islice
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_folder, write_json
from ..words import counted
from ..workers import process_pool
from .coco import annotation_path, is_training_split, read_coco_json
from .images import ImageFile, ImageFileError, read_image_file
from .index import IndexBuilder, SourceSplit, candidate_images, check_size, class_counts, summary_counts
from .packed import SUMMARY, ShardWriter, write_index, write_manifest
from .voc import read_voc
from .yolo import read_yolo

log = logging.getLogger(__name__)

SPLITS = ("train2017", "val2017")
DEFAULT_SHARD_SIZE = 1024  # images per shard: ~160 MB of COCO JPEGs
_CHUNK, _WINDOW = 16, 4  # images per worker task; tasks in flight per worker


def prepare_coco(
    src: str | Path, out: str | Path, *, splits: Optional[Sequence[str]] = None,
    workers: int = 1, shard_size: int = DEFAULT_SHARD_SIZE, overwrite: bool = False,
    progress: Optional[bool] = None, keep_background: bool = False,
) -> dict[str, dict]:
    """Pack each split of the COCO root ``src`` into ``out/{split}``; return the summaries.

    ``splits`` None means every split of SPLITS whose annotation file exists (at least one
    must); a split named explicitly must exist. ``progress`` None shows a bar on a terminal only.
    The seed's rules: images without boxes are dropped (unless ``keep_background``), and
    outside training splits so are images with a crowd annotation.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"COCO folder not found: {src}" if not src.exists() else
                                f"{src} is a file, not a COCO root folder (one COCO-format json: --annotations)")
    if splits is None:
        splits = [s for s in SPLITS if annotation_path(src, s).is_file()]
        if not splits:
            raise FileNotFoundError("no annotation file found: looked for " + ", ".join(
                str(annotation_path(src, s)) for s in SPLITS))
    for split in splits:
        if not annotation_path(src, split).is_file():
            raise FileNotFoundError(f"annotation file not found: {annotation_path(src, split)}")
    _check_outputs(out, splits, overwrite)
    return {split: pack_split(read_coco_json(annotation_path(src, split), src / split), out / split,
                              split=split, drop_crowd_images=not is_training_split(split),
                              keep_background=keep_background, workers=workers, shard_size=shard_size,
                              progress=progress) for split in splits}


def prepare_coco_export(
    annotations: str | Path, out: str | Path, *, split: str, images: Optional[str | Path] = None,
    keep_background: bool = True, workers: int = 1, shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False, progress: Optional[bool] = None,
) -> dict[str, dict]:
    """Pack one COCO-format json (any tool's export) into ``out/{split}``.

    ``images`` is the folder its ``file_name``s are relative to; None means the json's folder
    (Roboflow: ``train/_annotations.coco.json`` beside its images), or the ``images/`` folder
    beside ``annotations/`` when the json is in one (CVAT's ``annotations/instances_default.json``).
    No image is dropped for a crowd annotation (COCOeval ignores crowd regions itself).
    """
    annotations, out = Path(annotations), Path(out)
    if not annotations.is_file():
        raise FileNotFoundError(f"annotation file not found: {annotations}")
    if images is None:
        beside = annotations.parent.parent / "images"
        images = beside if annotations.parent.name == "annotations" and beside.is_dir() else annotations.parent
    images = Path(images)
    if not images.is_dir():
        raise FileNotFoundError(f"image folder not found: {images}")
    _check_outputs(out, [split], overwrite)
    return {split: pack_split(read_coco_json(annotations, images), out / split, split=split,
                              keep_background=keep_background, workers=workers, shard_size=shard_size,
                              progress=progress)}


def prepare_voc(
    root: str | Path, out: str | Path, *, splits: Optional[Sequence[str]] = None,
    classes: Optional[Sequence[str]] = None, keep_background: bool = True, workers: int = 1,
    shard_size: int = DEFAULT_SHARD_SIZE, overwrite: bool = False, progress: Optional[bool] = None,
) -> dict[str, dict]:
    """Pack the splits of a Pascal VOC folder (see ``data.voc``) into ``out/{split}``."""
    sources = read_voc(root, splits=splits, classes=classes)
    _check_outputs(Path(out), list(sources), overwrite)
    return _pack_all(sources, Path(out), keep_background=keep_background, workers=workers,
                     shard_size=shard_size, progress=progress)


def prepare_yolo(
    data_yaml: str | Path, out: str | Path, *, splits: Optional[Sequence[str]] = None,
    keep_background: bool = True, workers: int = 1, shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False, progress: Optional[bool] = None,
) -> dict[str, dict]:
    """Pack the splits of a YOLO data.yaml (see ``data.yolo``) into ``out/{split}``."""
    sources = read_yolo(data_yaml, splits=splits)
    _check_outputs(Path(out), list(sources), overwrite)
    return _pack_all(sources, Path(out), keep_background=keep_background, workers=workers,
                     shard_size=shard_size, progress=progress)


def _pack_all(sources: dict[str, SourceSplit], out: Path, **options) -> dict[str, dict]:
    return {split: pack_split(source, out / split, split=split, **options) for split, source in sources.items()}


def _check_outputs(out: Path, splits: Sequence[str], overwrite: bool) -> None:
    for split in splits:
        if not split or "/" in split or split.startswith("."):
            raise ValueError(f"split name {split!r}: expected a plain folder name")
        if (out / split).exists() and not overwrite:
            raise ValueError(f"{out / split} exists (pass --overwrite to replace it)")


def pack_split(
    source: SourceSplit, out_dir: Path, *, split: str, drop_crowd_images: bool = False,
    keep_background: bool = True, workers: int = 1, shard_size: int = DEFAULT_SHARD_SIZE,
    progress: Optional[bool] = None,
) -> dict:
    """Pack one split; see the module docstring. Returns its summary (also summary.json)."""
    start = time.perf_counter()
    candidates, early_drops = candidate_images(source, drop_crowd_images=drop_crowd_images,
                                               keep_background=keep_background)
    rows = np.flatnonzero(candidates)
    paths = [source.image_paths[r] for r in rows.tolist()]

    with atomic_folder(out_dir) as staging:
        builder = IndexBuilder(source, keep_background=keep_background)
        writer = ShardWriter(staging, rows_per_shard=shard_size)
        shard, row_in_shard, skipped, converted, oriented = [], [], list(source.skipped), [], []
        num_boxes = 0
        bar = tqdm(total=len(rows), desc=f"prepare {split}", unit="img", disable=_quiet(progress))
        try:
            results = zip(rows.tolist(), _read_all(paths, workers))
            while chunk := list(islice(results, _CHUNK * 4)):  # boxes are cleaned a chunk at a time
                bar.update(len(chunk))
                readable = []
                for row, result in chunk:
                    file_name = source.file_names[row]
                    reason = result if isinstance(result, str) else check_size(
                        (int(source.heights[row]), int(source.widths[row])), (result.height, result.width),
                        result.orientation)
                    if reason:
                        skipped.append({"file": file_name, "reason": reason})
                    else:
                        readable.append((row, result))
                if not readable:
                    continue
                kept_boxes = builder.add_many(
                    np.array([row for row, _ in readable]), heights=np.array([r.height for _, r in readable]),
                    widths=np.array([r.width for _, r in readable]))
                for (row, result), boxes in zip(readable, kept_boxes.tolist()):
                    if boxes < 0:  # dropped: no box left
                        continue
                    num_boxes += boxes
                    location = writer.add(int(source.image_ids[row]), result.data)
                    shard.append(location[0])
                    row_in_shard.append(location[1])
                    if result.converted_from:
                        converted.append({"file": source.file_names[row], "from_mode": result.converted_from})
                    if result.orientation != 1:
                        oriented.append({"file": source.file_names[row], "orientation": result.orientation})
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
        shards = writer.close()
        index = builder.finish()
        tables = write_index(staging, index, np.asarray(shard, np.int64), np.asarray(row_in_shard, np.int64))
        seconds = time.perf_counter() - start
        classes = class_counts(index)
        summary = {
            "split": split, "images": len(index), "boxes": num_boxes,
            "background_images": int((np.diff(index.box_offsets) == 0).sum()),
            "classes": classes, "unused_categories": [c["name"] for c in classes if c["boxes"] == 0],
            "not_classes": list(source.not_classes), "skipped": skipped,
            "converted_to_rgb": converted, "exif_oriented": oriented,
            **summary_counts(source, early_drops, builder),
            "shards": len(shards), "bytes": sum(s["bytes"] for s in shards),
            "source": source.origin, "workers": workers, "seconds": round(seconds, 2),
            "images_per_second": round(len(rows) / seconds, 1) if seconds > 0 else None,
        }
        write_json(staging / SUMMARY, summary)
        write_manifest(staging, split=split, categories=index.categories, shards=shards,
                       tables=tables, num_boxes=num_boxes)
    log.debug("%s: %d images, %d boxes, %d skipped, %d shards -> %s", split, summary["images"],
              num_boxes, len(skipped), len(shards), out_dir)
    return summary


def format_summary(summary: dict, out_dir: str | Path) -> str:
    """What the terminal shows for one packed split: totals, then images and boxes per class."""
    background = f" ({summary['background_images']} background)" if summary.get("background_images") else ""
    lines = [f"{summary['split']}: {counted(summary['images'], 'image')}{background}, "
             f"{counted(summary['boxes'], 'box', 'boxes')}, "
             f"{len(summary['skipped'])} skipped, {summary['shards']} shards, "
             f"{summary['images_per_second']} img/s -> {out_dir}"]
    classes = summary.get("classes", [])
    if classes:
        width = max(12, *(len(c["name"]) for c in classes))
        hard = any("difficult" in c for c in classes)
        lines.append(f"  {'class':<{width}} {'images':>7} {'boxes':>7}" + (f" {'difficult':>9}" if hard else ""))
        for c in classes:
            lines.append(f"  {c['name']:<{width}} {c['images']:>7} {c['boxes']:>7}"
                         + (f" {c.get('difficult', 0):>9}" if hard else ""))
    if summary.get("unused_categories"):
        lines.append(f"  no boxes of: {', '.join(summary['unused_categories'])}")
    for category in summary.get("not_classes", []):
        lines.append(f"  not a class: {category['name']} (id {category['id']}): {category['reason']}")
    dropped = {k: v for k, v in summary.get("dropped_boxes", {}).items() if v}
    if dropped:
        lines.append("  boxes dropped: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped.items()))
    dropped_images = {k: v for k, v in summary.get("dropped_images", {}).items() if v}
    if dropped_images:
        lines.append("  images dropped: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped_images.items()))
    places = summary.get("dropped_box_list", [])
    for item in places[:5]:
        lines.append(f"  dropped box: {item['file']}, {item['at']}: {item['reason']}")
    if len(places) > 5:
        lines.append(f"  ... {len(places) - 5} more dropped boxes (listed in summary.json, dropped_box_list)")
    if summary.get("exif_oriented"):
        lines.append(f"  {len(summary['exif_oriented'])} images turned upright by their EXIF orientation")
    for item in summary["skipped"][:5]:
        lines.append(f"  skipped {item['file']}: {item['reason']}")
    if len(summary["skipped"]) > 5:
        lines.append(f"  ... {len(summary['skipped']) - 5} more skipped (listed in summary.json)")
    return "\n".join(lines)


def _quiet(progress: Optional[bool]) -> Optional[bool]:
    return None if progress is None else not progress  # tqdm: None = quiet off-terminal


def _read_one(path: str) -> ImageFile | str:
    """Worker: the checked image, or the reason it is skipped."""
    try:
        return read_image_file(path)
    except ImageFileError as err:
        return err.reason


def _read_all(paths: list[str], workers: int) -> Iterator[ImageFile | str]:
    """Results in the order of ``paths``; ``workers`` > 1 decodes in that many processes."""
    if workers <= 1 or len(paths) < 2:
        yield from map(_read_one, paths)
        return
    chunks = (paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK))
    pool = process_pool(workers)  # forked: shares the parsed json; the workers touch no torch state
    try:
        # a bounded window of chunks in flight keeps memory flat however slow the writer is
        pending = deque(pool.submit(_read_chunk, c) for c in islice(chunks, workers * _WINDOW))
        while pending:
            results = pending.popleft().result()
            pending.extend(pool.submit(_read_chunk, c) for c in islice(chunks, 1))
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _read_chunk(paths: list[str]) -> list[ImageFile | str]:
    return [_read_one(p) for p in paths]
