"""Training: exact resume, the non-finite stop, evaluation on a prepared dataset, progress lines.
(torchrun: test_torchrun.py; signals: test_preemption.py; ckpt_save_dir: test_run_folder.py.)"""

from __future__ import annotations

import json
import logging
import re
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


def test_a_diverged_run_is_one_message_from_the_cli(monkeypatch, capsys):
    import ssdzoo.commands.train as train_command

    def diverged(args):
        raise NonFiniteLossError("loss became nan in epoch 2; the last good checkpoint is last.pt")

    monkeypatch.setattr(train_command, "run", diverged)
    assert main(["train", "demo"]) == 1
    assert capsys.readouterr().err == ("ssdzoo train: error: loss became nan in epoch 2; the last good "
                                       "checkpoint is last.pt\n")


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


def test_progress_lines_every_log_interval_off_a_terminal(shapes, tmp_path, caplog):
    """Logs, CI and nohup get no progress bar: a line every log_interval steps (and at the end
    of the epoch) with the loss, images/s and the epoch's ETA, as torchvision's references."""
    with caplog.at_level(logging.INFO, logger="ssdzoo.engine.train"):
        train(tiny(shapes, tmp_path, "log_interval=3"), epochs=1, progress_bar=False)
    lines = [r.getMessage() for r in caplog.records if " step " in r.getMessage()]
    assert len(lines) == 2, lines
    assert re.fullmatch(r"epoch 1/2 step 3/4: loss \d+\.\d{4}, lr 0\.\d{5}, \d+\.\d img/s, eta 0:00:\d\d", lines[0])
    assert lines[1].startswith("epoch 1/2 step 4/4: ") and lines[1].endswith("eta 0:00:00")


@pytest.mark.parametrize("evaluated", [False, True])
def test_curves_have_whole_epochs_and_a_validation_panel_only_when_evaluated(evaluated):
    from ssdzoo.engine.records import curves_figure

    rows = [{"epoch": e, "loss": 3.0 - 0.4 * e, "lr": 0.01 * e} for e in (1, 2, 3)]
    if evaluated:
        rows[2].update(AP=0.3, AP50=0.5)
    figure = curves_figure(rows)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == (["training", "validation (COCO)"] if evaluated else ["training"])
    for ax in figure.axes:
        if ax.get_xlabel() == "epoch":
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks == [1, 2, 3], ticks
    single = curves_figure(rows[:1])  # one epoch: one tick, not 0.96 ... 1.04
    low, high = single.axes[0].get_xlim()
    assert [t for t in single.axes[0].get_xticks() if low <= t <= high] == [1]
