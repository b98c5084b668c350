"""`ssdzoo prepare coco SRC OUT`: a COCO 2017 folder -> one packed split folder per split.

Per split: parse the json into flat arrays, drop what the rules drop before reading any file,
then check, decode and (for grayscale/CMYK) convert each remaining image in worker processes,
while the main process writes shards in json order. The output is the same for any number of
workers. The split is built in a staging folder next to OUT/{split} and moved into place only
when complete, so an interrupted run leaves the previous dataset (or nothing) in place.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_folder, write_json
from .coco import (IndexBuilder, annotation_path, candidate_images, check_size, is_training_split,
                   read_coco_json, summary_counts)
from .images import ImageFile, ImageFileError, read_image_file
from .packed import SUMMARY, ShardWriter, write_index, write_manifest

log = logging.getLogger(__name__)

SPLITS = ("train2017", "val2017")
DEFAULT_SHARD_SIZE = 1024  # images per shard: ~160 MB of COCO JPEGs
_CHUNK, _WINDOW = 16, 4  # images per worker task; tasks in flight per worker


def prepare_coco(
    src: str | Path, out: str | Path, *, splits: Optional[Sequence[str]] = None,
    workers: int = 1, shard_size: int = DEFAULT_SHARD_SIZE, overwrite: bool = False,
    progress: Optional[bool] = None,
) -> dict[str, dict]:
    """Pack each split of the COCO root ``src`` into ``out/{split}``; return the summaries.

    ``splits`` None means every split of SPLITS whose annotation file exists (at least one
    must); a split named explicitly must exist. ``progress`` None shows a bar on a terminal only.
    """
    src, out = Path(src), Path(out)
    if splits is None:
        splits = [s for s in SPLITS if annotation_path(src, s).is_file()]
        if not splits:
            raise FileNotFoundError("no annotation file found: looked for " + ", ".join(
                str(annotation_path(src, s)) for s in SPLITS))
    for split in splits:
        if not annotation_path(src, split).is_file():
            raise FileNotFoundError(f"annotation file not found: {annotation_path(src, split)}")
        if (out / split).exists() and not overwrite:
            raise ValueError(f"{out / split} exists (pass --overwrite to replace it)")
    return {split: prepare_split(annotation_path(src, split), src / split, out / split,
                                 split=split, workers=workers, shard_size=shard_size,
                                 progress=progress) for split in splits}


def prepare_split(
    json_path: Path, images_dir: Path, out_dir: Path, *, split: str, workers: int = 1,
    shard_size: int = DEFAULT_SHARD_SIZE, progress: Optional[bool] = None,
) -> dict:
    """Pack one split; see the module docstring."""
    start = time.perf_counter()
    coco = read_coco_json(json_path)
    candidates, early_drops = candidate_images(coco, drop_crowd_images=not is_training_split(split))
    rows = np.flatnonzero(candidates)
    paths = [str(images_dir / coco.file_names[r]) for r in rows.tolist()]

    with atomic_folder(out_dir) as staging:
        builder = IndexBuilder(coco)
        writer = ShardWriter(staging, rows_per_shard=shard_size)
        shard, row_in_shard, skipped, converted = [], [], [], []
        num_boxes = 0
        bar = tqdm(total=len(rows), desc=f"prepare {split}", unit="img", disable=_quiet(progress))
        try:
            results = zip(rows.tolist(), _read_all(paths, workers))
            while chunk := list(islice(results, _CHUNK * 4)):  # boxes are cleaned a chunk at a time
                bar.update(len(chunk))
                readable = []
                for row, result in chunk:
                    file_name = coco.file_names[row]
                    reason = result if isinstance(result, str) else check_size(
                        (int(coco.heights[row]), int(coco.widths[row])), (result.height, result.width))
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
                    if not boxes:
                        continue
                    num_boxes += boxes
                    location = writer.add(int(coco.image_ids[row]), result.data)
                    shard.append(location[0])
                    row_in_shard.append(location[1])
                    if result.converted_from:
                        converted.append({"file": coco.file_names[row], "from_mode": result.converted_from})
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
        shards = writer.close()
        index = builder.finish()
        tables = write_index(staging, index, np.asarray(shard, np.int64), np.asarray(row_in_shard, np.int64))
        seconds = time.perf_counter() - start
        summary = {
            "split": split, "images": len(index), "boxes": num_boxes, "skipped": skipped,
            "converted_to_rgb": converted, **summary_counts(coco, early_drops, builder),
            "shards": len(shards), "bytes": sum(s["bytes"] for s in shards),
            "source": {"annotations": str(json_path), "images": str(images_dir)},
            "workers": workers, "seconds": round(seconds, 2),
            "images_per_second": round(len(rows) / seconds, 1) if seconds > 0 else None,
        }
        write_json(staging / SUMMARY, summary)
        write_manifest(staging, split=split, categories=index.categories, shards=shards,
                       tables=tables, num_boxes=num_boxes)
    log.debug("%s: %d images, %d boxes, %d skipped, %d shards -> %s", split, summary["images"],
             num_boxes, len(skipped), len(shards), out_dir)
    return summary


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
    pool = _pool(workers)
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


def _pool(workers: int) -> ProcessPoolExecutor:
    # fork starts workers at once and shares the parsed json; the workers touch no torch state
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))
