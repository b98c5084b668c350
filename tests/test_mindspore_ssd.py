"""The seed's own ssd_mobilenetv2 checkpoint (written by MindSpore, randomized BN statistics and
biases) in ssdzoo: the same feature maps, box offsets and scores as the seed's model."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import GOLDEN_DIR, load_golden
from mindspore_writer import write_ckpt

import ssdzoo
from ssdzoo.cli import main
from ssdzoo.convert import mindspore_to_ssdzoo
from ssdzoo.convert.mindspore_ckpt import read_mindspore_checkpoint

GOLDEN_CKPT = GOLDEN_DIR / "mindspore" / "ssd_mobilenetv2_randbn.ckpt"
YX_TO_XY = [1, 0, 3, 2]  # the seed's (dy, dx, dh, dw) -> ssdzoo's (dx, dy, dw, dh)


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    return load_golden("mindspore/ssd_mobilenetv2_randbn_io.npz")


@pytest.fixture(scope="module")
def cfg() -> ssdzoo.Config:
    return ssdzoo.load_config("ssd_mobilenetv2")


def _outputs(model: torch.nn.Module, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    model.eval()
    with torch.no_grad():
        maps = model.feature_maps(torch.from_numpy(x))
        loc, logits = model.head(maps)  # = model(x), without running the backbone twice
    return [m.numpy() for m in maps], loc.numpy(), torch.sigmoid(logits).numpy()


@pytest.fixture(scope="module")
def golden_model(cfg) -> ssdzoo.Detector:
    return ssdzoo.build_model(cfg, weights=GOLDEN_CKPT)


def test_golden_checkpoint_reproduces_the_seed(golden_model, io):
    maps, loc, scores = _outputs(golden_model, io["x"])
    assert len(maps) == 6
    for i, got in enumerate(maps):
        np.testing.assert_allclose(got, io[f"feature_{i}"], atol=1e-4, rtol=0, err_msg=f"feature_{i}")
    np.testing.assert_allclose(loc, io["pred_loc"][..., YX_TO_XY], atol=1e-4, rtol=0)
    np.testing.assert_allclose(scores, io["pred_label"], atol=1e-4, rtol=0)


def test_every_checkpoint_tensor_lands_somewhere_distinct(golden_model):
    """409 MindSpore tensors fill 409 model tensors; the rest are BN counters set to 0."""
    state = golden_model.state_dict()
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert len(state) - len(counters) == len(read_mindspore_checkpoint(GOLDEN_CKPT).tensors)
    assert all(int(state[k]) == 0 for k in counters)


def test_training_state_is_dropped_and_reported(tmp_path, cfg, golden_model, io, caplog):
    """A training checkpoint also holds optimizer moments, the lr schedule, the step: dropped."""
    network = read_mindspore_checkpoint(GOLDEN_CKPT).tensors
    tensors = dict(network)
    tensors.update({f"moments.{k}": torch.zeros_like(v) for k, v in list(network.items())[:5]})
    tensors.update({"learning_rate": torch.linspace(0, 0.05, 10), "momentum": torch.tensor(0.9),
                    "global_step": torch.tensor([300], dtype=torch.int32)})
    path = tmp_path / "train.ckpt"
    write_ckpt(path, tensors, strings={"epoch_info": "epoch 500"})
    with caplog.at_level(logging.INFO, logger="ssdzoo.convert"):
        state = mindspore_to_ssdzoo(path, golden_model, cfg)
    assert "8 tensors not used, training state" in caplog.text
    assert "moments.backbone_wrapper.backbone.net.features_0.weight" in caplog.text
    assert "metadata string: epoch_info" in caplog.text
    for key, value in golden_model.state_dict().items():
        assert torch.equal(state[key], value), key


def test_missing_and_unknown_tensors_are_named(tmp_path, cfg, golden_model):
    network = read_mindspore_checkpoint(GOLDEN_CKPT).tensors
    missing = {k: v for k, v in network.items() if k != "multi_box.multi_cls_layers.2.1.gamma"}
    write_ckpt(tmp_path / "missing.ckpt", missing)
    with pytest.raises(ValueError, match=r"lacks 1 tensors of the model: head\.cls\.2\.0\.bn\.weight"):
        mindspore_to_ssdzoo(tmp_path / "missing.ckpt", golden_model, cfg)
    unknown = dict(network, **{"multi_box.extra_layers.0.weight": torch.zeros(3)})
    write_ckpt(tmp_path / "unknown.ckpt", unknown)
    with pytest.raises(ValueError, match="multi_box.extra_layers.0.weight"):
        mindspore_to_ssdzoo(tmp_path / "unknown.ckpt", golden_model, cfg)


def test_checkpoint_of_another_recipe_is_refused(cfg):
    with pytest.raises(ValueError, match="features_18"):
        ssdzoo.build_model(ssdzoo.load_config("ssd_mobilenetv3"), weights=GOLDEN_CKPT)


def test_convert_command_writes_safetensors_that_reload(tmp_path, cfg, golden_model, io, capsys):
    out = tmp_path / "ssd_mobilenetv2.safetensors"
    assert main(["convert", str(GOLDEN_CKPT), "--config", "ssd_mobilenetv2", "--out", str(out)]) == 0
    assert "486 tensors" in capsys.readouterr().out
    # no temporary file left behind; the recipe beside the weights reads back as the same config
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, "ssd_mobilenetv2.yaml"]
    assert ssdzoo.load_config(tmp_path / "ssd_mobilenetv2.yaml") == ssdzoo.load_config("ssd_mobilenetv2")
    reloaded = ssdzoo.build_model(cfg, weights=out)
    x = io["x"][:1]
    for a, b in zip(_outputs(reloaded, x)[1:], _outputs(golden_model, x)[1:]):
        np.testing.assert_array_equal(a, b)


def test_convert_command_reports_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"hello")
    assert main(["convert", str(bad), "--config", "ssd_mobilenetv2", "--out",
                 str(tmp_path / "o.safetensors")]) == 2
    assert "not a MindSpore checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()
