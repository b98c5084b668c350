"""ONNX export: onnxruntime against PyTorch, the NMS graph against ssdzoo.postprocess, and
Predictor on an .onnx file against Predictor on the checkpoint. Two exports for the module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import TINY_CONFIG, tiny_config

import ssdzoo
from ssdzoo.cli import main
from ssdzoo.export import DecodedDetector, export_onnx, synthetic_images
from ssdzoo.inference import Predictor, preprocess

ort = pytest.importorskip("onnxruntime")

SIZES_HW = ((48, 64), (96, 80), (64, 64))
# max_boxes 4 makes the per-class cap bind; min_score 0.2 leaves a part of the anchors out
OVERRIDES = ["max_boxes=4", "min_score=0.2"]


@pytest.fixture(scope="module")
def cfg():
    return tiny_config(*OVERRIDES)


@pytest.fixture(scope="module")
def images():
    return synthetic_images(seed=3, sizes_hw=SIZES_HW)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def plain_onnx(model, cfg, tmp_path_factory):
    return export_onnx(model, cfg, tmp_path_factory.mktemp("plain") / "model.onnx")


@pytest.fixture(scope="module")
def nms_export(checkpoint, tmp_path_factory):
    """The NMS graph, made by the CLI (which checks it against PyTorch and prints the result)."""
    import contextlib
    import io

    path = tmp_path_factory.mktemp("nms") / "model_nms.onnx"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["export", str(TINY_CONFIG), *OVERRIDES, "--checkpoint", str(checkpoint), "--out", str(path),
                     "--nms"])
    return path, code, out.getvalue()


def test_plain_graph_matches_pytorch_for_batch_1_and_3(plain_onnx, model, cfg, images):
    session = ort.InferenceSession(str(plain_onnx), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, 64, 64]
    assert [o.name for o in session.get_outputs()] == ["boxes", "probs"]
    decoded = DecodedDetector(model, cfg).eval()
    for count in (1, 3):
        batch, _ = preprocess(images[:count], cfg)
        with torch.inference_mode():
            boxes_xyxy, probs = decoded(batch)
        onnx_boxes, onnx_probs = session.run(None, {"images": batch.numpy()})
        assert onnx_boxes.shape == (count, cfg.num_ssd_boxes, 4)
        assert onnx_probs.shape == (count, cfg.num_ssd_boxes, cfg.num_classes)
        assert np.abs(onnx_boxes - boxes_xyxy.numpy()).max() < 1e-4
        assert np.abs(onnx_probs - probs.numpy()).max() < 1e-4


def test_export_leaves_only_the_graph(plain_onnx):
    assert [p.name for p in plain_onnx.parent.iterdir()] == ["model.onnx"]


def test_nms_graph_equals_ssdzoo_postprocess(nms_export, model, cfg, images):
    path, code, printed = nms_export
    assert code == 0, printed
    assert "detections: PyTorch" in printed and "onnxruntime" in printed
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images", "image_hw"]
    for count in (1, 3):
        batch, image_hw = preprocess(images[:count], cfg)
        with torch.inference_mode():
            loc, logits = model(batch)
        expected = ssdzoo.postprocess(ssdzoo.decode(loc, ssdzoo.default_boxes(cfg), cfg), logits.sigmoid(),
                                      cfg, image_hw)
        batch_index, boxes, scores, labels = session.run(
            None, {"images": batch.numpy(), "image_hw": image_hw.numpy().astype(np.float32)})
        assert len(scores) == sum(len(d.scores) for d in expected) > 0
        for i, want in enumerate(expected):
            mine = batch_index == i
            order = np.lexsort((-scores[mine], labels[mine]))  # ssdzoo's order: label, score descending
            assert labels[mine][order].tolist() == want.labels.tolist()
            np.testing.assert_allclose(boxes[mine][order], want.boxes.numpy(), atol=1e-4, rtol=0)
            np.testing.assert_allclose(scores[mine][order], want.scores.numpy(), atol=1e-5, rtol=0)
        assert np.bincount(labels - 1 + 3 * batch_index).max() == cfg.max_boxes  # the cap binds


@pytest.mark.parametrize("graph", ["plain", "nms"])
def test_onnx_predictor_equals_checkpoint_predictor(graph, plain_onnx, nms_export, checkpoint, cfg, images):
    path = plain_onnx if graph == "plain" else nms_export[0]
    reference = Predictor.from_weights(cfg, checkpoint).predict(images)
    onnx = Predictor.from_weights(cfg, path).predict(images, batch_size=2)
    assert sum(len(d.scores) for d in reference) > 0
    for got, want in zip(onnx, reference):
        assert got.labels.tolist() == want.labels.tolist()
        torch.testing.assert_close(got.boxes, want.boxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(got.scores, want.scores, atol=1e-5, rtol=0)


def test_onnx_predictor_checks_the_config(plain_onnx, nms_export, cfg):
    with pytest.raises(ValueError, match=r"\[64, 64\].*\[128, 128\]"):
        Predictor.from_weights(cfg.replace(image_size=(128, 128)), plain_onnx)
    with pytest.raises(ValueError, match="min_score"):
        Predictor.from_weights(cfg, nms_export[0], min_score=0.05)


def test_the_graph_carries_its_config_and_predict_needs_no_other(plain_onnx, cfg, images, tmp_path):
    from PIL import Image

    from ssdzoo.checkpoint_config import config_for_weights, saved_config

    assert saved_config(plain_onnx) == cfg.to_dict()
    assert config_for_weights(None, ["min_score=0.3"], plain_onnx) == cfg.replace(min_score=0.3)
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    out = tmp_path / "p"
    assert main(["predict", "--checkpoint", str(plain_onnx), str(tmp_path / "a.png"), "--out", str(out)]) == 0
    assert (tmp_path / "p" / "a.png").is_file()


def test_nms_graph_with_torchvision_postprocessing_equals_the_checkpoint(model, images, tmp_path):
    """softmax scores, clipped boxes, plain IoU, per-class top-k and the per-image cap, all in the graph."""
    import copy

    cfg = tiny_config("score_activation=softmax", "clip_boxes=true", "nms_plus_one=false", "min_score=0.05",
                      "nms_threshold=0.45", "pre_nms_top_k=10", "max_detections=8")
    path = export_onnx(model, cfg, tmp_path / "tv_nms.onnx", nms=True)
    reference = Predictor(cfg, copy.deepcopy(model)).predict(images)
    onnx = Predictor.from_weights(cfg, path).predict(images, batch_size=2)
    assert [len(d.scores) for d in reference] == [8, 8, 8]  # the cap binds
    for got, want in zip(onnx, reference):
        assert got.labels.tolist() == want.labels.tolist()
        torch.testing.assert_close(got.boxes, want.boxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(got.scores, want.scores, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="max_detections"):
        Predictor.from_weights(cfg.replace(max_detections=9), path)
