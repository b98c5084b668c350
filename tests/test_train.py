"""Training: exact resume, the non-finite stop, evaluation on a prepared dataset, DDP = one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ssdzoo
from ssdzoo.cli import main
from ssdzoo.data import make_synthetic_coco, prepare_coco
from ssdzoo.data.synthetic import SynthSpec
from ssdzoo.engine import train as train_module
from ssdzoo.engine.checkpoint import load_checkpoint
from ssdzoo.engine.train import NonFiniteLossError, train
from tiny import TINY_CONFIG as TINY



@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """16 training and 8 validation images of the synthetic shapes, 64-96 px."""
    root = tmp_path_factory.mktemp("shapes")
    make_synthetic_coco(root, seed=3, num_train=16, num_val=8, progress=False,
                        spec=SynthSpec(min_side=64, max_side=96, min_object=12.0))
    return root


def tiny(data_dir: Path, out_dir: Path, *overrides: str) -> ssdzoo.Config:
    return ssdzoo.load_config(TINY, [f"data_dir={data_dir}", f"ckpt_save_dir={out_dir}", *overrides])


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_resumed_run_ends_with_the_same_weights(shapes, tmp_path):
    whole = train(tiny(shapes, tmp_path / "whole"), progress_bar=False)
    assert whole["epochs"] == 2
    cfg = tiny(shapes, tmp_path / "split")
    assert train(cfg, epochs=1, progress_bar=False)["epochs"] == 1
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1
    train(cfg, resume=tmp_path / "split" / "last.pt", progress_bar=False)
    expected, resumed = weights(tmp_path / "whole" / "last.pt"), weights(tmp_path / "split" / "last.pt")
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    rows = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,loss,lr") and len(rows) == 3
    assert (tmp_path / "split" / "curves.png").stat().st_size > 0
    assert any((tmp_path / "split" / "tensorboard").iterdir())


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(shapes, tmp_path, monkeypatch):
    cfg = tiny(shapes, tmp_path)
    train(cfg, epochs=1, progress_bar=False)
    before = weights(tmp_path / "last.pt")

    def diverged(*args, **kwargs):
        return torch.tensor(float("nan"), requires_grad=True)

    monkeypatch.setattr(train_module, "ssd_loss", diverged)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan in epoch 2.*last good checkpoint"):
        train(cfg, resume=tmp_path / "last.pt", progress_bar=False)
    after = load_checkpoint(tmp_path / "last.pt")
    assert after["epoch"] == 1
    assert all(torch.equal(before[k], after["model"][k]) for k in before)


def test_eval_while_training_and_eval_on_a_prepared_dataset(shapes, tmp_path, capsys):
    packed = tmp_path / "packed"
    prepare_coco(shapes, packed, progress=False)
    cfg = tiny(packed, tmp_path / "run", "eval_while_train=true", "eval_start_epoch=1", "eval_interval=1")
    summary = train(cfg, progress_bar=False)
    assert summary["best"] and summary["metrics"] is not None
    best = load_checkpoint(summary["best"])
    assert best["metrics"]["AP"] == summary["best_ap"]

    report = tmp_path / "metrics.json"
    assert main(["eval", str(TINY), f"data_dir={packed}", "--checkpoint", summary["best"], "--json", str(report)]) == 0
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in capsys.readouterr().out
    stats = json.loads(report.read_text())
    for key in ("AP", "AP50", "AP75", "AR100"):
        assert 0.0 <= stats[key] <= 1.0
    assert stats["APl"] is None  # 64-96 px images hold no large (> 96^2 px) objects: COCOeval's -1
    assert stats["AP"] == pytest.approx(best["metrics"]["AP"])


def test_torchrun_two_processes_match_one_process(shapes, tmp_path):
    """2 CPU processes (gloo) x batch 2, one epoch, then resumed to the second, against one
    process x batch 4. BN statistics are per device in data-parallel training (as in the seed),
    so both runs keep BN frozen (freeze_bn) to compare the rest exactly."""
    common = [f"data_dir={shapes}", "freeze_bn=true"]
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ssdzoo", "train", str(TINY), *common, "batch_size=2", f"ckpt_save_dir={ddp_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for extra in (["--epochs", "1"], ["--resume", str(ddp_dir / "last.pt")]):
        done = subprocess.run(command + extra, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    train(ssdzoo.load_config(TINY, [*common, "batch_size=4", f"ckpt_save_dir={single_dir}"]), progress_bar=False)

    ddp, single = load_checkpoint(ddp_dir / "last.pt"), load_checkpoint(single_dir / "last.pt")
    assert ddp["epoch"] == single["epoch"] == 2 and ddp["step"] == single["step"] == 8
    for name, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][name], value, rtol=1e-4, atol=1e-5, msg=name)
