"""Atomic file writes: every file ssdzoo writes appears whole under its name, or not at all.

A file is written under a fresh hidden name in the same folder, flushed to disk, then renamed
over the final name (a rename within one folder is atomic), so a crash mid-write leaves the
previous file, if any, as it was. A folder is built the same way, in a hidden staging folder
beside it, and swapped in when complete.

    with atomic_path("runs/v2/last.pt") as tmp:
        torch.save(state, tmp)
    with atomic_folder("data/packed/val2017") as staging:
        write_shards(staging)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional


def temporary_path(path: str | Path) -> Path:
    """A fresh hidden name beside ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def commit(tmp: Path, path: str | Path, *, durable: bool = True) -> None:
    """Rename the finished ``tmp`` over ``path``, after flushing it to disk if ``durable``."""
    if durable:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """A temporary path to write ``path`` through: committed when the block ends, removed if
    it raises. The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        commit(tmp, path, durable=durable)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A hidden staging folder to build the folder ``path`` in: when the block ends it takes the
    place of ``path`` (a folder already there is removed only afterwards); if the block raises it
    is removed and ``path`` stays as it was. Staging folders that interrupted runs left are
    removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = path.with_name(f".{path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
        os.replace(staging, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, value: Any, *, indent: Optional[int] = 1, durable: bool = True) -> Path:
    return write_bytes(path, (json.dumps(value, indent=indent) + "\n").encode("utf-8"), durable=durable)
