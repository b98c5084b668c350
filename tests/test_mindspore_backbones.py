"""MindCV backbone checkpoints (mobilenet_v2_100, mobilenet_v3_large_100, resnet50) in ssdzoo.

The real files can't be downloaded here, so each test writes one with MindCV's exact names and
shapes from a PyTorch replica of MindCV's network (tests/mindcv_replicas.py), loads it through
the recipe (``backbone_ckpt_path``), and checks that (1) every tensor except the classifier
lands in exactly one timm tensor with its value, and (2) the timm backbone computes what
MindCV's network computes, "same" padding included.
"""

from __future__ import annotations

import json
import logging

import mindcv_replicas as replicas
import pytest
import torch
from conftest import GOLDEN_DIR
from mindspore_writer import write_ckpt

from torch import nn

import ssdzoo
from ssdzoo.cli import main
from ssdzoo.convert.mindspore_names import mindcv_module_name
from ssdzoo.model import Detector
from ssdzoo.model.backbone import TimmBackbone
from ssdzoo.model.layers import use_same_padding
from ssdzoo.weights import load_backbone_weights

RECIPES = {  # recipe -> (replica, MindCV tensors without a timm counterpart in the recipe)
    "ssd_mobilenetv2": (replicas.MobileNetV2, {"classifier.1.weight", "classifier.1.bias"}),
    "ssd_mobilenetv3": (replicas.MobileNetV3Large, {"classifier.0.weight", "classifier.0.bias",
                                                    "classifier.3.weight", "classifier.3.bias"}),
    "ssd_resnet50_fpn": (replicas.ResNet50, {"classifier.weight", "classifier.bias"}),
}


def recipe_backbone(cfg: ssdzoo.Config, *, same_padding: bool = True) -> Detector:
    """The recipe's backbone as build_model makes it, without the (slow to initialize) neck
    and head, which a backbone checkpoint does not touch."""
    backbone = TimmBackbone(cfg.backbone, cfg.backbone_out_indices, use_head=cfg.backbone_use_head,
                            **cfg.backbone_kwargs)
    if same_padding:
        use_same_padding(backbone.model, cfg.backbone_same_padding)
    return Detector(backbone, nn.Identity(), nn.Identity()).eval()


@pytest.fixture(scope="module", params=list(RECIPES))
def loaded(request, tmp_path_factory):
    """(recipe, replica, its MindCV tensors, the checkpoint, backbone with it, log text)."""
    recipe = request.param
    replica = replicas.randomize(RECIPES[recipe][0]())
    tensors = replicas.mindcv_state(replica)
    path = tmp_path_factory.mktemp(recipe) / f"{recipe}_backbone.ckpt"
    write_ckpt(path, tensors)
    cfg = ssdzoo.load_config(recipe)
    model = recipe_backbone(cfg)
    handler = _Capture()
    logging.getLogger("ssdzoo").addHandler(handler)
    logging.getLogger("ssdzoo").setLevel(logging.INFO)
    try:
        load_backbone_weights(model, path, cfg)
    finally:
        logging.getLogger("ssdzoo").removeHandler(handler)
    return recipe, replica, tensors, path, model, "\n".join(handler.lines)


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_mobilenet_v2_replica_has_the_seed_checkpoint_names():
    """The replica's names are those of the real MindSpore file's backbone part."""
    params = json.loads((GOLDEN_DIR / "mindspore" / "ssd_mobilenetv2_params.json").read_text())
    prefix = "backbone_wrapper.backbone.net."
    seed = {mindcv_module_name(p["name"], prefix): p["shape"] for p in params
            if p["name"].startswith(prefix)}
    replica = {k: list(v.shape) for k, v in replicas.mindcv_state(replicas.MobileNetV2()).items()}
    assert seed == {k: v for k, v in replica.items() if not k.startswith("classifier")}


def test_every_tensor_lands_once_with_its_value(loaded):
    recipe, _, tensors, _, model, log_text = loaded
    unused_expected = RECIPES[recipe][1]
    state = {k: v for k, v in model.backbone.model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    sources = {}
    for key, value in state.items():
        found = [tag for tag, t in tensors.items()
                 if t.numel() == value.numel() and torch.equal(t.reshape(value.shape), value)]
        assert len(found) == 1, f"{key}: matches {found}"
        sources[key] = found[0]
    assert len(set(sources.values())) == len(sources)
    assert set(tensors) - set(sources.values()) == unused_expected
    assert all(tag in log_text for tag in unused_expected), log_text


def test_backbone_computes_what_mindcv_computes(loaded):
    """Even input sizes, where "same" padding (MobileNetV3 depthwise, ResNet max-pool) and
    PyTorch's symmetric padding disagree."""
    _, replica, _, _, model, _ = loaded
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = replica(x)
        got = model.backbone(x)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * float(e.abs().max()))


@pytest.mark.parametrize("loaded", ["ssd_mobilenetv3", "ssd_resnet50_fpn"], indirect=True)
def test_symmetric_padding_would_not_match(loaded):
    """The recipe's backbone_same_padding is what makes MobileNetV3 and ResNet50 agree
    (MindCV's MobileNetV2 pads like PyTorch; its recipe needs none)."""
    recipe, replica, _, _, model, _ = loaded
    cfg = ssdzoo.load_config(recipe)
    assert cfg.backbone_same_padding
    plain = recipe_backbone(cfg, same_padding=False)
    plain.backbone.load_state_dict(model.backbone.state_dict())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (plain.backbone(x)[0] - replica(x)[0]).abs().max()
    assert diff > 1e-3


@pytest.mark.parametrize("loaded", ["ssd_mobilenetv2"], indirect=True)
def test_recipe_config_takes_a_mindcv_checkpoint(loaded):
    """``backbone_ckpt_path`` in the recipe (the seed's key) accepts the .ckpt: build_model
    gives the same backbone (one recipe: building whole SSDs is slow)."""
    recipe, _, _, path, model, _ = loaded
    built = ssdzoo.build_model(ssdzoo.load_config(recipe).replace(backbone_ckpt_path=str(path)))
    expected = model.backbone.state_dict()
    for key, value in built.backbone.state_dict().items():
        assert torch.equal(value, expected[key]), key


@pytest.mark.parametrize("loaded", ["ssd_mobilenetv3"], indirect=True)
def test_converted_backbone_file_loads_the_same(loaded, tmp_path):
    """``ssdzoo convert`` of a backbone .ckpt writes timm's state dict, for backbone_ckpt_path."""
    recipe, _, _, path, model, _ = loaded
    out = tmp_path / "backbone.safetensors"
    assert main(["convert", str(path), "--config", recipe, "--out", str(out)]) == 0
    cfg = ssdzoo.load_config(recipe)
    again = recipe_backbone(cfg)
    load_backbone_weights(again, out, cfg)
    expected = model.backbone.state_dict()
    for key, value in again.backbone.state_dict().items():
        assert torch.equal(value, expected[key]), key
