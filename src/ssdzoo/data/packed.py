"""The packed dataset: image bytes in Arrow IPC shards, an index of flat Arrow tables, a manifest.

One split folder (``OUT/train2017``) holds:

    manifest.json              format, categories, and every file below with its size and sha256
    summary.json               what prepare kept and dropped (images, boxes, skipped, ...)
    images-00000.arrow ...     shards: Arrow IPC files with columns image_id (int64) and image
                               (binary, the JPEG/PNG bytes), in record batches of 64 rows
    index-images.arrow         per image: image_id, file_name, height, width, shard, row,
                               number of boxes, number of ground-truth annotations
    index-boxes.arrow          per training box: boxes_xyxy (4 x float32, pixels), label
    index-annotations.arrow    per ground-truth annotation: id, category_id, bbox (4 x float64),
                               area, iscrowd, difficult (as in the source, for evaluation)

Why Arrow IPC files: they are memory-mapped and read without a copy or a decode step, so
reading image ``i`` costs one lookup in its shard (a Parquet page must be decompressed and
decoded first, and LMDB would add a dependency and one big file). Many readers of one dataset
share the page cache, and a torchrun rank touches only the pages of its own images. The files
open in any Arrow tool (pyarrow, polars, duckdb) for inspection. JPEG bytes do not compress, so
shards are stored uncompressed.

Crash safety: every file is written under a temporary name in the same folder, flushed to
disk and renamed; the manifest is written last, and a folder without one is not a dataset.
``verify_packed`` checks every file against its sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from ..atomic import WriteError, atomic_path, commit, temporary_path, write_json
from .images import ImageFileError, decode
from .index import DetectionIndex

FORMAT = "ssdzoo.packed"
VERSION = 2  # 2 added the annotations' difficult column (VOC); version 1 folders still read
READABLE_VERSIONS = (1, 2)
MANIFEST, SUMMARY = "manifest.json", "summary.json"
ROWS_PER_BATCH = 64
SHARD_NAME = "images-{:05d}.arrow"

SHARD_SCHEMA = pa.schema([("image_id", pa.int64()), ("image", pa.binary())])
IMAGES_SCHEMA = pa.schema([
    ("image_id", pa.int64()), ("file_name", pa.string()), ("height", pa.int64()),
    ("width", pa.int64()), ("shard", pa.int32()), ("row", pa.int32()),
    ("num_boxes", pa.int64()), ("num_annotations", pa.int64()),
])
BOXES_SCHEMA = pa.schema([("boxes_xyxy", pa.list_(pa.float32(), 4)), ("label", pa.int64())])
ANNOTATIONS_SCHEMA = pa.schema([
    ("id", pa.int64()), ("category_id", pa.int64()), ("bbox_xywh", pa.list_(pa.float64(), 4)),
    ("area", pa.float64()), ("iscrowd", pa.int64()), ("difficult", pa.int8()),
])
TABLES = {"images": "index-images.arrow", "boxes": "index-boxes.arrow",
          "annotations": "index-annotations.arrow"}


class PackedFormatError(ValueError):
    """A folder that is not a complete, intact packed dataset."""


def file_entry(path: Path, **extra: Any) -> dict:
    """Manifest entry of a written file: name, bytes, sha256."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"file": path.name, **extra, "bytes": path.stat().st_size, "sha256": digest}


def _write_ipc_atomic(path: Path, batches: list[pa.RecordBatch], schema: pa.Schema) -> None:
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)


class ShardWriter:
    """Appends images to shards of ``rows_per_shard`` rows; each shard appears under its final
    name only once it is complete and on disk. A failed write (full disk, I/O error) raises
    WriteError naming the shard, and its temporary file is removed."""

    def __init__(self, folder: Path, *, rows_per_shard: int):
        if rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be positive, got {rows_per_shard}")
        self.folder = Path(folder)
        self.rows_per_shard = rows_per_shard
        self.shards: list[dict] = []
        self._sink: Optional[pa.OSFile] = None
        self._writer: Optional[pa.ipc.RecordBatchFileWriter] = None
        self._rows = 0
        self._pending_ids: list[int] = []
        self._pending_data: list[bytes] = []
        self._tmp: Optional[Path] = None

    @contextlib.contextmanager
    def _writing(self):
        try:
            yield
        except OSError as err:
            if isinstance(err, WriteError):
                raise
            final = self.folder / SHARD_NAME.format(len(self.shards))
            with contextlib.suppress(Exception):
                self.abort()
            raise WriteError(final, err, temporary=self._tmp) from err

    def add(self, image_id: int, data: bytes) -> tuple[int, int]:
        """Append one image; return its (shard, row)."""
        with self._writing():
            return self._add(image_id, data)

    def _add(self, image_id: int, data: bytes) -> tuple[int, int]:
        if self._writer is None:
            self._tmp = temporary_path(self.folder / SHARD_NAME.format(len(self.shards)))
            self._sink = pa.OSFile(str(self._tmp), "wb")
            self._writer = pa.ipc.new_file(self._sink, SHARD_SCHEMA)
        location = (len(self.shards), self._rows)
        self._pending_ids.append(image_id)
        self._pending_data.append(data)
        self._rows += 1
        if len(self._pending_ids) == ROWS_PER_BATCH:
            self._flush_batch()
        if self._rows == self.rows_per_shard:
            self._close_shard()
        return location

    def _flush_batch(self) -> None:
        if self._pending_ids:
            self._writer.write_batch(pa.record_batch(
                [pa.array(self._pending_ids, pa.int64()), pa.array(self._pending_data, pa.binary())],
                schema=SHARD_SCHEMA))
            self._pending_ids, self._pending_data = [], []

    def _close_shard(self) -> None:
        self._flush_batch()
        self._writer.close()
        self._sink.close()
        final = self.folder / SHARD_NAME.format(len(self.shards))
        commit(self._tmp, final)
        self.shards.append(file_entry(final, rows=self._rows))
        self._writer, self._sink, self._rows = None, None, 0

    def close(self) -> list[dict]:
        """Finish the last shard; return the manifest entries of all shards."""
        if self._writer is not None:
            with self._writing():
                self._close_shard()
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (after an error)."""
        if self._writer is not None:
            writer, sink, self._writer = self._writer, self._sink, None
            try:
                writer.close()
                sink.close()
            finally:
                self._tmp.unlink(missing_ok=True)


def write_index(folder: Path, index: DetectionIndex, shard: np.ndarray, row: np.ndarray) -> dict:
    """Write the three index tables; return their manifest entries."""
    images = pa.record_batch([
        pa.array(index.image_ids), index.file_names, pa.array(index.heights),
        pa.array(index.widths), pa.array(shard.astype(np.int32)), pa.array(row.astype(np.int32)),
        pa.array(np.diff(index.box_offsets)), pa.array(np.diff(index.ann_offsets)),
    ], schema=IMAGES_SCHEMA)
    boxes = pa.record_batch([
        _fixed_list(index.boxes_xyxy.astype(np.float32), pa.float32()), pa.array(index.labels),
    ], schema=BOXES_SCHEMA)
    annotations = pa.record_batch([
        pa.array(index.ann_ids), pa.array(index.ann_category_ids),
        _fixed_list(index.ann_bbox_xywh.astype(np.float64), pa.float64()),
        pa.array(index.ann_area), pa.array(index.ann_iscrowd), pa.array(index.difficult().astype(np.int8)),
    ], schema=ANNOTATIONS_SCHEMA)
    entries = {}
    for name, batch in (("images", images), ("boxes", boxes), ("annotations", annotations)):
        path = folder / TABLES[name]
        _write_ipc_atomic(path, [batch], batch.schema)
        entries[name] = file_entry(path, rows=batch.num_rows)
    return entries


def _fixed_list(values: np.ndarray, value_type: pa.DataType) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), value_type), 4)


def write_manifest(folder: Path, *, split: str, categories: tuple[dict, ...], shards: list[dict],
                   tables: dict, num_boxes: int) -> dict:
    manifest = {
        "format": FORMAT, "version": VERSION, "split": split,
        "images": tables["images"]["rows"], "boxes": num_boxes,
        "categories": [dict(c) for c in categories],
        "shards": shards, "tables": tables,
    }
    write_json(folder / MANIFEST, manifest)
    return manifest


class PackedSplit:
    """A packed split, opened for random access: ``index`` (flat arrays) and ``read(i)``.

    Opening reads the manifest and the index tables (memory-mapped, checked against their
    sha256) and checks each shard's size; shards are mapped on first use, in each process
    separately, so forked loader workers share pages instead of copying them.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST
        if not manifest_path.is_file():
            raise PackedFormatError(f"{self.folder}: not a packed dataset (no {MANIFEST}; an "
                                    "interrupted prepare leaves none)")
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise PackedFormatError(f"{manifest_path}: not valid JSON ({err})") from None
        if self.manifest.get("format") != FORMAT or self.manifest.get("version") not in READABLE_VERSIONS:
            raise PackedFormatError(
                f"{manifest_path}: expected format {FORMAT} version {VERSION}, got "
                f"{self.manifest.get('format')} version {self.manifest.get('version')}")
        for entry in [*self.manifest["shards"], *self.manifest["tables"].values()]:
            path = self.folder / entry["file"]
            if not path.is_file():
                raise PackedFormatError(f"{path}: missing (the manifest lists it)")
            if path.stat().st_size != entry["bytes"]:
                raise PackedFormatError(f"{path}: {path.stat().st_size} bytes, the manifest says "
                                        f"{entry['bytes']} (truncated or replaced)")
        for entry in self.manifest["tables"].values():
            if file_entry(self.folder / entry["file"])["sha256"] != entry["sha256"]:
                raise PackedFormatError(f"{self.folder / entry['file']}: checksum mismatch")
        self.index, self.shard_of, self.row_of = self._read_index()
        self._shards: dict[int, list[pa.BinaryArray]] = {}

    @property
    def split(self) -> str:
        return self.manifest["split"]

    @property
    def summary(self) -> dict:
        path = self.folder / SUMMARY
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def _table(self, name: str) -> pa.Table:
        path = self.folder / self.manifest["tables"][name]["file"]
        return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()

    def _read_index(self) -> tuple[DetectionIndex, np.ndarray, np.ndarray]:
        images, boxes, anns = self._table("images"), self._table("boxes"), self._table("annotations")
        box_counts, ann_counts = _numpy(images, "num_boxes"), _numpy(images, "num_annotations")
        index = DetectionIndex(
            categories=tuple(self.manifest["categories"]),
            image_ids=_numpy(images, "image_id"),
            file_names=_array(images, "file_name"),
            heights=_numpy(images, "height"),
            widths=_numpy(images, "width"),
            box_offsets=np.concatenate([[0], np.cumsum(box_counts)]).astype(np.int64),
            boxes_xyxy=_numpy(boxes, "boxes_xyxy").reshape(-1, 4),
            labels=_numpy(boxes, "label"),
            ann_offsets=np.concatenate([[0], np.cumsum(ann_counts)]).astype(np.int64),
            ann_ids=_numpy(anns, "id"),
            ann_category_ids=_numpy(anns, "category_id"),
            ann_bbox_xywh=_numpy(anns, "bbox_xywh").reshape(-1, 4),
            ann_area=_numpy(anns, "area"),
            ann_iscrowd=_numpy(anns, "iscrowd"),
            ann_difficult=_difficult(anns),
        )
        return index, _numpy(images, "shard"), _numpy(images, "row")

    def __len__(self) -> int:
        return len(self.index)

    def _batches(self, shard: int) -> list[pa.BinaryArray]:
        batches = self._shards.get(shard)
        if batches is None:
            path = self.folder / self.manifest["shards"][shard]["file"]
            reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
            batches = [reader.get_batch(b).column(1) for b in range(reader.num_record_batches)]
            self._shards[shard] = batches
        return batches

    def read(self, i: int) -> bytes:
        """The stored image bytes of image ``i`` (index order)."""
        row = int(self.row_of[i])
        return self._batches(int(self.shard_of[i]))[row // ROWS_PER_BATCH][row % ROWS_PER_BATCH].as_py()

    def __getstate__(self) -> dict:
        # pickled into spawned workers: the mapped shards are reopened there
        state = self.__dict__.copy()
        state["_shards"] = {}
        return state


def _array(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    if column.num_chunks == 1:
        return column.chunk(0)
    return column.combine_chunks() if column.num_chunks else pa.array([], column.type)


def _difficult(annotations: pa.Table) -> Optional[np.ndarray]:
    """The difficult flags (int64), or None where there are none (version 1 has no column)."""
    if "difficult" not in annotations.column_names:
        return None
    flags = _numpy(annotations, "difficult").astype(np.int64)
    return flags if flags.any() else None


def _numpy(table: pa.Table, name: str) -> np.ndarray:
    array = _array(table, name)
    if pa.types.is_fixed_size_list(array.type):
        array = array.flatten()
    return array.to_numpy(zero_copy_only=False)


def verify_packed(folder: str | Path) -> list[str]:
    """Check every file of a packed split against the manifest's sha256; return the problems
    (empty when intact). A damaged shard is named, then each of its images that no longer
    decodes (training skips those; other damage shows only in the checksum)."""
    folder = Path(folder)
    try:
        split = PackedSplit(folder)
    except PackedFormatError as err:
        return [str(err)]
    problems = []
    for number, entry in enumerate(split.manifest["shards"]):
        path = folder / entry["file"]
        if file_entry(path)["sha256"] != entry["sha256"]:
            problems.append(f"{path}: checksum mismatch")
            problems += _undecodable_images(split, number, path)
            continue
        with pa.memory_map(str(path), "r") as source:
            rows = sum(len(b) for b in pa.ipc.open_file(source).read_all().to_batches())
        if rows != entry["rows"]:
            problems.append(f"{path}: {rows} rows, manifest says {entry['rows']}")
    return problems


def _undecodable_images(split: PackedSplit, shard: int, path: Path) -> list[str]:
    problems = []
    for i in np.flatnonzero(split.shard_of == shard).tolist():
        name = split.index.file_names[i].as_py()
        try:
            decode(split.read(i))
        except ImageFileError as err:
            problems.append(f"{path}: image {name} does not decode ({err})")
        except Exception as err:  # the Arrow structure itself is damaged
            return [f"{path}: its rows cannot be read ({err})"]
    return problems


def is_packed_split(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def manifest_categories(folder: str | Path) -> list[dict]:
    """The categories of a packed split, from its manifest alone (no index read)."""
    path = Path(folder) / MANIFEST
    try:
        categories = json.loads(path.read_text(encoding="utf-8"))["categories"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PackedFormatError(f"{path}: no readable categories ({err})") from None
    return categories
