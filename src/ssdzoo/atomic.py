"""Atomic file writes: every file ssdzoo writes appears whole under its name, or not at all.

A file is written under a fresh hidden name in the same folder, flushed to disk, then renamed
over the final name (a rename within one folder is atomic), so a crash mid-write leaves the
previous file, if any, as it was. A folder is built the same way, in a hidden staging folder
beside it, and swapped in when complete.

    with atomic_path("runs/v2/last.pt") as tmp:
        torch.save(state, tmp)
    with atomic_folder("data/packed/val2017") as staging:
        write_shards(staging)

A write that fails for want of space or an I/O error (ENOSPC, EDQUOT, EIO, ...) raises
``WriteError`` naming the file; the temporary file is removed and the previous file is left
as it was. Libraries that turn the OSError into an error of their own (torch.save raises a
RuntimeError) are seen through: the OSError they were handling is found and reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional


class WriteError(OSError):
    """A file that could not be written; the previous version of it, if any, is intact."""

    def __init__(self, path: str | Path, cause: OSError, *, temporary: Optional[Path] = None):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.path = Path(path)
        self.filename = str(path)
        kept = "the previous file is intact" if self.path.exists() else "nothing was written there"
        left = (f"; remove the temporary {temporary.name} by hand" if temporary is not None and temporary.exists()
                else "")
        self.message = f"cannot write {self.path}: {self.strerror} ({kept}{left})"

    def __str__(self) -> str:
        return self.message


def os_error_behind(err: BaseException) -> Optional[OSError]:
    """``err`` itself if it is an OSError, else an OSError it was raised while handling."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


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
    it raises. The parent folder is created. A failed write (an OSError, or an error raised
    while handling one) becomes ``WriteError`` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(path, err) from err
    tmp = temporary_path(path)
    try:
        yield tmp
        commit(tmp, path, durable=durable)
    except Exception as err:
        _remove(tmp)
        cause = os_error_behind(err)
        if cause is None or isinstance(err, WriteError):
            raise
        raise WriteError(path, cause, temporary=tmp) from err
    finally:
        _remove(tmp)


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):  # a failing disk may refuse this too: never mask the first error
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A hidden staging folder to build the folder ``path`` in: when the block ends it takes the
    place of ``path`` (a folder already there is removed only afterwards); if the block or the
    swap raises it is removed and ``path`` stays as it was. What interrupted runs left is dealt
    with first: staging folders are removed, and a previous folder hidden for the swap is put
    back if a run died before the new one took its place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover_folder(path)
    staging = path.with_name(f".{path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        old, token = None, f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if path.exists():
            old = path.with_name(f".{path.name}.old-{token}")
            os.replace(path, old)
        try:
            os.replace(staging, path)
        except BaseException:
            if old is not None:
                with contextlib.suppress(OSError):  # else the next run puts it back (_recover_folder)
                    os.replace(old, path)
            raise
        if old is not None:  # renamed first: a removal cut short is never taken for the previous folder
            doomed = path.with_name(f".{path.name}.partial-{token}-old")
            with contextlib.suppress(OSError):  # else the next run removes it
                os.replace(old, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _recover_folder(path: Path) -> None:
    """Put back the previous ``path`` hidden by a run that died mid-swap (``path`` missing), then
    remove staging folders and hidden previous folders left by interrupted runs."""
    hidden = sorted(path.parent.glob(f".{path.name}.old-*"))
    if hidden and not path.exists():
        os.replace(hidden.pop(0), path)
    for stale in [*hidden, *path.parent.glob(f".{path.name}.partial-*")]:
        shutil.rmtree(stale, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, value: Any, *, indent: Optional[int] = 1, durable: bool = True) -> Path:
    return write_bytes(path, (json.dumps(value, indent=indent) + "\n").encode("utf-8"), durable=durable)
