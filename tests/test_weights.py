"""Weight files ssdzoo can't read get ssdzoo's own one-line error naming the kinds it reads; never
torch's advice to re-run torch.load with weights_only=False (which would run the file's code)."""

from __future__ import annotations

import pytest
import torch

import ssdzoo
from ssdzoo.inference import Predictor
from ssdzoo.weights import READABLE_KINDS, WeightsFileError, read_state_dict, weights_kind


class Pickled(torch.nn.Module):  # a whole pickled module, the usual "torch.save(model)" file
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1)


def assert_ssdzoo_message(err: Exception, path) -> None:
    text = str(err)
    assert text.startswith(f"{path}: ") and "\n" not in text
    for kind in (".pt", ".safetensors", "MindSpore .ckpt", "TensorFlow frozen graphs (.pb)",
                 "TensorFlow checkpoints", "SavedModel"):
        assert kind in text
    assert "weights_only" not in text and "re-run" not in text.lower() and "Unpickl" not in text


def test_a_pickled_model_is_refused_without_torchs_advice(tmp_path, cfg):
    path = tmp_path / "model.pt"
    torch.save(Pickled(), path)
    with pytest.raises(WeightsFileError) as err:
        ssdzoo.build_model(cfg, weights=path)
    assert_ssdzoo_message(err.value, path)
    assert "pickled Python objects" in str(err.value) and err.value.__cause__ is not None


@pytest.mark.parametrize("name, data, why", [
    ("random.bin", bytes(range(256)) * 4, "not a PyTorch file"),
    ("notes.txt", b"hello, weights", "not a weights file ssdzoo recognizes"),
    ("cut.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", "damaged"),
])
def test_foreign_files_name_the_kinds_ssdzoo_reads(tmp_path, name, data, why):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(WeightsFileError) as err:
        read_state_dict(path)
    assert_ssdzoo_message(err.value, path)
    assert why in str(err.value)


def test_a_truncated_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"model": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:600])
    assert weights_kind(path) == "torch"
    with pytest.raises(WeightsFileError, match="damaged or truncated PyTorch file") as err:
        read_state_dict(path)
    assert_ssdzoo_message(err.value, path)


def test_onnx_is_named_where_the_command_takes_it(tmp_path, cfg):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x08\x12\x07pytorch")
    with pytest.raises(WeightsFileError, match="an ONNX graph, which runs as it is"):
        ssdzoo.build_model(cfg, weights=path)
    odd = tmp_path / "weights.xyz"
    odd.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsFileError) as err:
        Predictor.from_weights(cfg, odd)
    assert_ssdzoo_message(err.value, odd)
    assert ".onnx graphs from `ssdzoo export`" in str(err.value)
    assert ".onnx" not in READABLE_KINDS


def test_state_dicts_still_load(tmp_path, cfg, model):
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    assert weights_kind(path) == "torch"
    reloaded = ssdzoo.build_model(cfg, weights=path)
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))
