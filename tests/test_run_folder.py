"""ckpt_save_dir: a new run never replaces another by surprise; --resume auto finds the latest
checkpoint that loads; --resume continues in the checkpoint's folder; keep_checkpoint_max."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from tiny import TINY_CONFIG, make_tiny_shapes

from ssdzoo.cli import main
from ssdzoo.engine import run_folder
from ssdzoo.engine.checkpoint import load_checkpoint, save_checkpoint
from ssdzoo.engine.run_folder import Plan, RunFolder, RunFolderError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_tiny_shapes(tmp_path_factory.mktemp("shapes"))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_new_run_stops_before_touching_a_finished_run(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", str(TINY_CONFIG), f"data_dir={shapes}", f"ckpt_save_dir={run}", "eval_while_train=true",
            "eval_start_epoch=1", "eval_interval=1"]
    assert main(args) == 0
    (run / "metrics.json").write_text('{"AP": 0.5}\n')  # what `ssdzoo eval --json` leaves beside best.pt
    (run / "notes.txt").write_text("mine\n")
    before = snapshot(run)
    capsys.readouterr()

    assert main([*args, "epoch_size=1"]) == 2
    err = capsys.readouterr().err
    assert f"{run} already holds a run (last.pt, best.pt, epoch_0001.pt, epoch_0002.pt)" in err
    assert "--resume auto" in err and "--overwrite" in err and "another ckpt_save_dir" in err
    assert snapshot(run) == before  # nothing written, nothing removed

    assert main([*args, "epoch_size=1", "--overwrite"]) == 0
    assert load_checkpoint(run / "best.pt")["epoch"] == 1
    assert sorted(p.name for p in run.glob("epoch_*.pt")) == ["epoch_0001.pt"]
    assert len((run / "metrics.csv").read_text().splitlines()) == 2
    assert len(list((run / "tensorboard").iterdir())) == 1  # one run's events, not two mixed
    assert not (run / "metrics.json").exists() and (run / "notes.txt").read_text() == "mine\n"


def test_resume_continues_in_the_checkpoints_folder(shapes, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # the tiny config's ckpt_save_dir is the default ./ckpt
    base = ["train", str(TINY_CONFIG), f"data_dir={shapes}"]
    assert main([*base, "ckpt_save_dir=first", "--epochs", "1"]) == 0
    with caplog.at_level(logging.INFO):
        assert main([*base, "--resume", "first/last.pt"]) == 0
    assert "continuing in first, the folder of first/last.pt" in caplog.text
    assert load_checkpoint(tmp_path / "first" / "last.pt")["epoch"] == 2
    assert not (tmp_path / "ckpt").exists()


def checkpoint(path: Path, epoch: int) -> Path:
    save_checkpoint({"epoch": epoch}, path)
    return path


def test_resume_auto_takes_the_latest_checkpoint_that_loads(tmp_path, caplog):
    folder = RunFolder(tmp_path)
    assert folder.plan("auto") == Plan()  # nothing there: a new run
    checkpoint(tmp_path / "epoch_0001.pt", 1)
    checkpoint(tmp_path / "epoch_0002.pt", 2)
    assert folder.plan("auto") == Plan(resume=tmp_path / "epoch_0002.pt")
    checkpoint(tmp_path / "last.pt", 3)
    assert folder.plan("auto") == Plan(resume=tmp_path / "last.pt")
    (tmp_path / "last.pt").write_bytes(b"rotten")
    assert folder.plan("auto") == Plan(resume=tmp_path / "epoch_0002.pt")
    assert "last.pt: not a readable ssdzoo checkpoint" in caplog.text


def test_the_plan_refuses_what_would_mix_two_runs(tmp_path):
    other, here = RunFolder(tmp_path / "other"), RunFolder(tmp_path / "here")
    checkpoint(other.last, 1)
    assert here.plan(other.last) == Plan(resume=other.last)  # an empty folder may take it over
    checkpoint(here.best, 1)
    with pytest.raises(RunFolderError, match="no last.pt or epoch checkpoint that loads"):
        here.plan("auto")
    with pytest.raises(RunFolderError, match="holds another run's checkpoints .best.pt.: continuing"):
        here.plan(other.last)
    with pytest.raises(RunFolderError, match="cannot be combined with --resume"):
        here.plan("auto", overwrite=True)
    assert here.plan(None, overwrite=True) == Plan(clear=True, overwrite=True)


def test_records_of_a_run_that_saved_no_checkpoint_are_cleared(tmp_path):
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events.out").write_bytes(b"x")
    for name in ("metrics.csv", "config.yaml", "metrics.json", "notes.txt"):
        (tmp_path / name).write_text("x")
    folder = RunFolder(tmp_path)
    plan = folder.plan(None)
    assert plan == Plan(clear=True)
    assert folder.plan("auto") == plan  # nothing to continue: --resume auto starts the same new run
    folder.clear(overwrite=plan.overwrite)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "notes.txt"]


def test_keep_checkpoint_max_keeps_the_newest_per_epoch_files(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path)
    for epoch in range(1, 5):
        checkpoint(folder.last, epoch)
        folder.keep_epoch(epoch, keep=2)
    assert [e for e, _ in folder.epoch_checkpoints()] == [3, 4]
    assert load_checkpoint(folder.epoch_path(3))["epoch"] == 3
    assert os.path.samefile(folder.epoch_path(4), folder.last)  # a hard link: no extra space
    checkpoint(folder.last, 5)  # last.pt moves on; the link keeps epoch 4
    assert load_checkpoint(folder.epoch_path(4))["epoch"] == 4

    def no_links(*args):
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(run_folder.os, "link", no_links)
    folder.keep_epoch(5, keep=2)
    assert load_checkpoint(folder.epoch_path(5))["epoch"] == 5 and not os.path.samefile(folder.epoch_path(5),
                                                                                          folder.last)
    folder.keep_epoch(6, keep=0)
    assert folder.epoch_checkpoints() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left


def test_temporaries_of_killed_writers_are_removed_at_start(tmp_path):
    dead = tmp_path / ".last.pt.999999999.0123abcd.tmp"  # no such process
    alive = tmp_path / f".metrics.csv.{os.getppid()}.0123abcd.tmp"  # a writer that still runs
    other = tmp_path / ".notes.txt.999999999.0123abcd.tmp"  # not a file of a run
    for path in (dead, alive, other):
        path.write_bytes(b"half")
    RunFolder(tmp_path).remove_stale_temporaries()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])


def test_keep_checkpoint_max_with_evaluation_every_epoch_leaves_only_what_it_keeps(shapes, tmp_path, caplog):
    run = tmp_path / "run"
    args = ["train", str(TINY_CONFIG), f"data_dir={shapes}", f"ckpt_save_dir={run}", "keep_checkpoint_max=1",
            "eval_while_train=true", "eval_start_epoch=1", "eval_interval=1", "epoch_size=3"]
    assert main([*args, "--epochs", "2"]) == 0
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no hidden link of a pruned epoch
    assert [e for e, _ in RunFolder(run).epoch_checkpoints()] == [2]
    with caplog.at_level(logging.INFO):
        assert main([*args, "--resume", "auto"]) == 0
    assert "removing" not in caplog.text
    names = sorted(p.name for p in run.iterdir())
    assert [n for n in names if n.endswith(".pt")] == ["best.pt", "epoch_0003.pt", "last.pt"]
    assert not [n for n in names if n.startswith(".")]
    assert load_checkpoint(run / "epoch_0003.pt")["epoch"] == 3
