"""SIGTERM and Ctrl-C during training: the step finishes, a checkpoint is written at that step,
the run stops with 128 + the signal, and --resume auto ends with the weights of an
uninterrupted run. A periodic mid-epoch checkpoint does the same for a kill without warning."""

from __future__ import annotations

import signal
import time

import pytest
from tiny import TINY_CONFIG, assert_same_weights, checkpoint_weights, make_tiny_shapes, tiny_run_config

from ssdzoo.cli import main
from ssdzoo.engine import preemption
from ssdzoo.engine import train as train_module
from ssdzoo.engine.checkpoint import load_checkpoint
from ssdzoo.engine.preemption import StopNow, StopSignals, TrainingInterrupted
from ssdzoo.engine.train import train

STEPS_PER_EPOCH = 4  # 16 images, batch 4


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_tiny_shapes(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def uninterrupted(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    train(tiny_run_config(shapes, out), progress_bar=False)
    return checkpoint_weights(out / "last.pt")


def during_step(monkeypatch, step: int, action) -> None:
    """Run ``action`` in the middle of training step ``step`` (1-based, counted in this process)."""
    original, calls = train_module.TrainStep.__call__, []

    def step_with_fault(self, batch):
        calls.append(1)
        if len(calls) == step:
            action()
        return original(self, batch)

    monkeypatch.setattr(train_module.TrainStep, "__call__", step_with_fault)


def test_sigterm_mid_epoch_saves_that_step_and_resume_auto_matches(shapes, uninterrupted, tmp_path, monkeypatch,
                                                                   capsys):
    args = ["train", str(TINY_CONFIG), f"data_dir={shapes}", f"ckpt_save_dir={tmp_path}"]
    during_step(monkeypatch, 6, lambda: signal.raise_signal(signal.SIGTERM))  # epoch 2, its step 2
    assert main(args) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "stopped by SIGTERM in epoch 2 after step 2 of 4 (step 6 in all)" in err
    assert "--resume auto" in err and "Traceback" not in err
    saved = load_checkpoint(tmp_path / "last.pt")
    assert (saved["epoch"], saved["step"], saved["epoch_images"]) == (1, 6, 8)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are gone again

    monkeypatch.undo()
    assert main([*args, "--resume", "auto"]) == 0
    assert_same_weights(uninterrupted, checkpoint_weights(tmp_path / "last.pt"))
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "1", "2"]


def test_ctrl_c_stops_after_the_step_with_status_130(shapes, tmp_path, monkeypatch):
    during_step(monkeypatch, 3, lambda: signal.raise_signal(signal.SIGINT))
    with pytest.raises(TrainingInterrupted, match="stopped by SIGINT in epoch 1 after step 3 of 4") as stop:
        train(tiny_run_config(shapes, tmp_path), progress_bar=False)
    assert stop.value.exit_status == 130 and stop.value.checkpoint == str(tmp_path / "last.pt")
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 3


def crash_in_step(monkeypatch, step: int) -> None:
    """As SIGKILL would: nothing is written at the crash."""
    def killed():
        raise SystemExit("killed")

    during_step(monkeypatch, step, killed)


def test_periodic_checkpoint_survives_a_kill_without_warning(shapes, uninterrupted, tmp_path, monkeypatch):
    """Saved every 5th step (and at the end of epoch 1, step 4); killed in step 7, the run
    continues from step 5, in the middle of epoch 2."""
    cfg = tiny_run_config(shapes, tmp_path, "save_checkpoint_minutes=0", "save_checkpoint_steps=5")
    crash_in_step(monkeypatch, 7)
    with pytest.raises(SystemExit):
        train(cfg, progress_bar=False)
    saved = load_checkpoint(tmp_path / "last.pt")
    assert (saved["step"], saved["epoch"], saved["epoch_images"]) == (5, 1, 4)
    monkeypatch.undo()
    train(cfg, resume="auto", progress_bar=False)
    assert_same_weights(uninterrupted, checkpoint_weights(tmp_path / "last.pt"))


def test_periodic_checkpoint_by_the_clock(shapes, tmp_path, monkeypatch):
    cfg = tiny_run_config(shapes, tmp_path, "save_checkpoint_minutes=1.0e-9")  # due after every step
    crash_in_step(monkeypatch, 7)
    with pytest.raises(SystemExit):
        train(cfg, progress_bar=False)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 6


def test_sigterm_during_evaluation_keeps_the_epoch_and_evaluates_it_on_resume(shapes, tmp_path, monkeypatch):
    overrides = ["eval_while_train=true", "eval_start_epoch=1", "eval_interval=1"]
    whole = train(tiny_run_config(shapes, tmp_path / "whole", *overrides), progress_bar=False)
    cfg = tiny_run_config(shapes, tmp_path / "split", *overrides)
    original_evaluate = train_module.evaluate

    def preempted_evaluate(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        return original_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", preempted_evaluate)
    with pytest.raises(TrainingInterrupted, match="while evaluating epoch 1, which is evaluated again"):
        train(cfg, progress_bar=False)
    saved = load_checkpoint(tmp_path / "split" / "last.pt")
    assert (saved["epoch"], saved["evaluated"], saved["epoch_images"]) == (1, 0, 0)
    monkeypatch.undo()
    resumed = train(cfg, resume="auto", progress_bar=False)
    assert resumed["best_ap"] == whole["best_ap"] and resumed["metrics"] == whole["metrics"]
    whole_rows = [r.split(",")[-2:] for r in (tmp_path / "whole" / "metrics.csv").read_text().splitlines()]
    split_rows = [r.split(",")[-2:] for r in (tmp_path / "split" / "metrics.csv").read_text().splitlines()]
    assert all(ap for ap, _ in whole_rows[1:]) and split_rows == whole_rows  # AP of both epochs, the interrupted one too
    assert_same_weights(checkpoint_weights(tmp_path / "whole" / "best.pt"),
                        checkpoint_weights(tmp_path / "split" / "best.pt"))


def test_stop_signals_first_request_repeats_and_a_second_ctrl_c(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(preemption.time, "monotonic", lambda: clock[0])
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        assert signals.received is None
        signal.raise_signal(signal.SIGTERM)
        assert signals.received == signal.SIGTERM
        clock[0] += 0.5
        signal.raise_signal(signal.SIGINT)  # relayed by torchrun a moment later: the same request
        clock[0] += 10
        signal.raise_signal(signal.SIGTERM)  # a later SIGTERM changes nothing
        assert signals.received == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # a later Ctrl-C: stop at once
        with pytest.raises(StopNow), signals.interrupting():
            pass  # already requested: a long wait is not even begun
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_request_inside_an_interruptible_block_ends_it_at_once():
    with StopSignals() as signals:
        started = time.monotonic()
        with pytest.raises(StopNow, match="SIGTERM"), signals.interrupting():
            signal.raise_signal(signal.SIGTERM)
            time.sleep(5)
        assert time.monotonic() - started < 1
