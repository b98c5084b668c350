"""A full disk or an I/O error while writing a checkpoint, the records or a shard: the previous
file stays intact and loadable, no temporary file is left, and the error names the path."""

from __future__ import annotations

import errno
import io
import os
import subprocess

import pytest
import torch
from tiny import TINY_CONFIG, make_tiny_shapes

from ssdzoo import atomic
from ssdzoo.atomic import WriteError, atomic_path, write_json
from ssdzoo.cli import main
from ssdzoo.data import PackedSplit, prepare_coco
from ssdzoo.engine import checkpoint as checkpoint_module
from ssdzoo.engine.checkpoint import load_checkpoint, save_checkpoint
from ssdzoo.engine.records import TrainingRecords


class NearlyFullDisk:
    """Files that take ``room`` more bytes in all, then fail with ENOSPC, as a full disk does:
    the write that does not fit stores what fits and raises."""

    def __init__(self, room: int):
        self.room = room

    def open(self, path, mode="wb", *args, **kwargs):
        disk = self

        class File(io.FileIO):
            def write(self, data) -> int:
                data = bytes(data)
                fits = max(0, min(len(data), disk.room))
                if fits:
                    super().write(data[:fits])
                    disk.room -= fits
                if fits < len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return fits

        return File(path, mode.replace("b", ""))


def only(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_write_names_the_file_and_keeps_the_previous_one(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"AP": 0.5})
    with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device .the previous file "
                                         "is intact") as failure:
        with atomic_path(path) as tmp:
            tmp.write_text("{half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert failure.value.errno == errno.ENOSPC and failure.value.filename == str(path)
    assert path.read_text() == '{\n "AP": 0.5\n}\n' and only(tmp_path) == ["metrics.json"]


def test_an_io_error_at_fsync_is_a_failed_write_too(tmp_path, monkeypatch):
    path = tmp_path / "new.json"

    def failing_fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(WriteError, match="new.json: Input/output error .nothing was written there"):
        write_json(path, {"AP": 0.5})
    assert only(tmp_path) == []


def test_checkpoint_into_a_nearly_full_filesystem_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1, "model": {"w": torch.ones(8)}}, path)
    monkeypatch.setattr(checkpoint_module, "open", NearlyFullDisk(room=4096).open, raising=False)
    with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device"):
        save_checkpoint({"epoch": 2, "model": {"w": torch.zeros(100_000)}}, path)  # 400 kB: does not fit
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1 and only(tmp_path) == ["last.pt"]


def test_checkpoint_into_a_full_tmpfs(tmp_path):
    """The same on a real filesystem of 256 kB, where this machine allows mounting one."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root here")
    try:
        path = mount / "last.pt"
        save_checkpoint({"epoch": 1, "model": {"w": torch.ones(1000)}}, path)
        with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device .the previous"):
            save_checkpoint({"epoch": 2, "model": {"w": torch.zeros(100_000)}}, path)
        assert load_checkpoint(path)["epoch"] == 1 and only(mount) == ["last.pt"]
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_training_stops_with_the_path_when_a_checkpoint_cannot_be_written(tmp_path, monkeypatch, capsys):
    shapes = make_tiny_shapes(tmp_path / "shapes")
    run = tmp_path / "run"
    args = ["train", str(TINY_CONFIG), f"data_dir={shapes}", f"ckpt_save_dir={run}"]
    assert main([*args, "--epochs", "1"]) == 0
    before = load_checkpoint(run / "last.pt")
    monkeypatch.setattr(checkpoint_module, "open", NearlyFullDisk(room=0).open, raising=False)
    assert main([*args, "--resume", "auto"]) == 2
    assert f"ssdzoo train: error: cannot write {run / 'last.pt'}: No space left on device (the previous file " \
           "is intact)" in capsys.readouterr().err
    monkeypatch.undo()
    after = load_checkpoint(run / "last.pt")
    assert after["epoch"] == 1 and all(torch.equal(before["model"][k], v) for k, v in after["model"].items())
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_records_that_cannot_be_written_name_the_file(tmp_path, monkeypatch):
    records = TrainingRecords(tmp_path)
    records.epoch(1, loss=1.0, lr=0.1, images_per_s=10.0, seconds=1.0)
    before = (tmp_path / "metrics.csv").read_text()

    def failing_fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(WriteError, match="metrics.csv: Input/output error"):
        records.epoch(2, loss=0.5, lr=0.1, images_per_s=10.0, seconds=1.0)
    monkeypatch.undo()
    records.close()
    assert (tmp_path / "metrics.csv").read_text() == before


def test_prepare_on_a_full_disk_keeps_the_previous_dataset(tmp_path, monkeypatch, capsys):
    import pyarrow as pa

    shapes = make_tiny_shapes(tmp_path / "shapes")
    out = tmp_path / "packed"
    prepare_coco(shapes, out, splits=["train2017"], shard_size=4, progress=False)
    manifest = PackedSplit(out / "train2017").manifest
    disk = NearlyFullDisk(room=manifest["shards"][0]["bytes"] + 1000)  # the second shard does not fit
    monkeypatch.setattr(pa, "OSFile", lambda path, mode: pa.PythonFile(disk.open(path, "wb"), mode="w"))
    assert main(["prepare", "coco", str(shapes), str(out), "--splits", "train2017", "--shard-size", "4",
                 "--workers", "1", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"ssdzoo prepare: error: cannot write {out}/.train2017.partial-" in err
    assert "images-00001.arrow: No space left on device" in err
    monkeypatch.undo()
    assert only(out) == ["train2017"]  # no staging folder left
    assert PackedSplit(out / "train2017").manifest == manifest
