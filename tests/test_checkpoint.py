import random

import numpy as np
import pytest
import torch

from ssdzoo.engine import checkpoint
from ssdzoo.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def test_round_trip_with_rng_state(tmp_path):
    path = tmp_path / "last.pt"
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "rng": rng_state(), "config": {"lr": 0.1}}
    save_checkpoint(state, path)
    expected = (torch.rand(2), np.random.rand(), random.random())
    loaded = load_checkpoint(path)
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(2), expected[0])
    assert np.random.rand() == expected[1] and random.random() == expected[2]
    assert loaded["epoch"] == 2 and loaded["config"] == {"lr": 0.1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp files left


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)

    def crash_midway(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_loading_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"epoch": 1, "payload": object()}, path)  # an arbitrary object needs unpickling
    with pytest.raises(ValueError, match="not a readable ssdzoo checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
