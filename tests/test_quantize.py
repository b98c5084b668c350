"""int8 export (`ssdzoo export --int8`) and `ssdzoo eval` / Predictor on .onnx graphs, float and int8."""

from __future__ import annotations

import contextlib
import io
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import TINY_CONFIG

from ssdzoo.cli import main
from ssdzoo.data.synthetic import SynthSpec, make_synthetic_coco
from ssdzoo.export import export_onnx, synthetic_images
from ssdzoo.inference import Predictor
from ssdzoo.quantize import calibration_images, graph_parts, matched_detections

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    make_synthetic_coco(root, seed=3, num_train=0, num_val=10, progress=False,
                        spec=SynthSpec(min_side=48, max_side=96, min_object=10.0))
    return root


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint, model, cfg, coco, tmp_path_factory):
    """The float graph (export_onnx) and the int8 one (the CLI, calibrated on the COCO root)."""
    folder = tmp_path_factory.mktemp("onnx")
    float_path = export_onnx(model, cfg, folder / "model.onnx")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["export", str(TINY_CONFIG), "--checkpoint", str(checkpoint), "--out", str(folder / "model.int8.onnx"),
                     "--int8", "--calibration", str(coco), "--calibration-images", "8"])
    assert code == 0, out.getvalue()
    return float_path, folder / "model.int8.onnx", out.getvalue()


def test_int8_graph_is_quantized_and_keeps_the_metadata(exported, model, cfg):
    float_path, int8_path, printed = exported
    assert "int8, calibrated on" in printed and "8 of 10 images" in printed and "found by int8" in printed
    assert sorted(p.name for p in int8_path.parent.iterdir()) == ["model.int8.onnx", "model.onnx"]  # no leftovers
    float_model, int8_model = onnx.load(str(float_path)), onnx.load(str(int8_path))
    float_meta = {p.key: p.value for p in float_model.metadata_props}
    int8_meta = {p.key: p.value for p in int8_model.metadata_props}
    assert {k: v for k, v in int8_meta.items() if k != "ssdzoo.quantization"} == float_meta
    quantization = json.loads(int8_meta["ssdzoo.quantization"])
    assert quantization["calibration_images"] == 8 and quantization["weights"] == "int8 per channel"

    ops = [n.op_type for n in int8_model.graph.node]
    assert ops.count("DequantizeLinear") > ops.count("Conv") > 0
    int8_weights = {i.name for i in int8_model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    weight_of = {n.output[0]: n.input[0] for n in int8_model.graph.node if n.op_type == "DequantizeLinear"}
    last_convs, post = graph_parts(int8_model)
    convs = [n for n in int8_model.graph.node if n.op_type == "Conv"]
    assert len(last_convs) == 2 * len(cfg.feature_size) and post  # box and class conv per level
    assert all(weight_of.get(conv.input[1]) in int8_weights for conv in convs)  # every conv int8
    # after the network (decode, sigmoid) nothing is quantized: the outputs come out of float ops
    producers = {out: n.op_type for n in int8_model.graph.node for out in n.output}
    assert {producers[o.name] for o in int8_model.graph.output}.isdisjoint({"DequantizeLinear", "QuantizeLinear"})


def test_int8_predictor_is_close_to_float(exported, cfg):
    float_path, int8_path, _ = exported
    images = synthetic_images(seed=4)
    reference = Predictor.from_weights(cfg, float_path).predict(images)
    int8 = Predictor.from_weights(cfg, int8_path).predict(images)
    assert sum(len(d.scores) for d in int8) > 0
    found, total = matched_detections(reference, int8, min_score=0.5, iou=0.5)
    assert total > 0 and found >= 0.8 * total


def test_eval_runs_onnx_graphs(exported, checkpoint, coco, tmp_path):
    float_path, int8_path, _ = exported
    stats = {}
    for name, weights in (("pt", checkpoint), ("float", float_path), ("int8", int8_path)):
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["eval", str(TINY_CONFIG), f"data_dir={coco}", "--checkpoint", str(weights), "--json",
                         str(tmp_path / f"{name}.json")])
        assert code == 0
        stats[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert stats["float"]["checkpoint"].endswith("model.onnx")
    for key in ("AP", "AP50", "AR100"):  # onnxruntime's float graph gives PyTorch's numbers
        assert stats["float"][key] == pytest.approx(stats["pt"][key], abs=1e-6)
        assert 0.0 <= stats["int8"][key] <= 1.0


def test_calibration_from_an_image_folder_and_bad_arguments(cfg, checkpoint, tmp_path, capsys):
    for i, image in enumerate(synthetic_images(seed=6)):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    calibration = calibration_images(tmp_path, cfg, count=2)
    assert calibration.images.shape == (2, 3, *cfg.image_size) and calibration.image_hw.tolist()[0] == [480, 640]
    assert np.isfinite(calibration.images.numpy()).all()

    code = main(["export", str(TINY_CONFIG), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"),
                 "--int8"])
    assert code == 2 and "--int8 needs --calibration" in capsys.readouterr().err
    code = main(["export", str(TINY_CONFIG), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"),
                 "--int8", "--calibration", str(tmp_path / "missing")])
    assert code == 2 and "missing" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_head_convolutions_can_stay_float(exported, cfg, tmp_path):
    from ssdzoo.inference import preprocess
    from ssdzoo.quantize import Calibration, quantize_onnx

    float_path, _, _ = exported
    calibration = Calibration(*preprocess(synthetic_images(seed=7), cfg), source="synthetic")
    model = onnx.load(str(quantize_onnx(float_path, tmp_path / "head.onnx", calibration, float_part="head")))
    int8_weights = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    weight_of = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    last_convs, _ = graph_parts(model)
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        assert (weight_of.get(conv.input[1]) in int8_weights) == (conv.name not in last_convs), conv.name
    with pytest.raises(ValueError, match="float_part"):
        quantize_onnx(float_path, tmp_path / "x.onnx", calibration, float_part="all")


def test_calibration_reads_the_configs_val_split(coco, tmp_path):
    """A packed root or a COCO root whose evaluation split is not named val2017 is a dataset
    (the config's val_split), not a folder of image files."""
    import shutil

    from ssdzoo.data.coco import annotation_path, read_coco_json
    from ssdzoo.data.prepare import pack_split
    from tiny import tiny_config

    cfg = tiny_config("val_split=holdout")
    source = read_coco_json(annotation_path(coco, "val2017"), coco / "val2017")
    pack_split(source, tmp_path / "packed" / "holdout", split="holdout")
    calibration = calibration_images(tmp_path / "packed", cfg, count=4)
    assert calibration.images.shape == (4, 3, *cfg.image_size)
    assert calibration.source.endswith("holdout (4 of 10 images)")

    raw = tmp_path / "raw"
    shutil.copytree(coco / "val2017", raw / "holdout")
    (raw / "annotations").mkdir()
    shutil.copy(annotation_path(coco, "val2017"), annotation_path(raw, "holdout"))
    calibration = calibration_images(raw, cfg, count=4)
    assert calibration.images.shape == (4, 3, *cfg.image_size) and "4 of 10 images" in calibration.source


def test_calibration_skips_a_damaged_dataset_image(coco, cfg, tmp_path, caplog):
    """A JPEG damaged inside a packed shard (its SOI marker zeroed in place) is logged by name
    and left out; the others calibrate."""
    from ssdzoo.data import PackedSplit
    from ssdzoo.data.coco import annotation_path, read_coco_json
    from ssdzoo.data.prepare import pack_split

    folder = tmp_path / "packed" / "val2017"
    pack_split(read_coco_json(annotation_path(coco, "val2017"), coco / "val2017"), folder, split="val2017")
    split = PackedSplit(folder)
    name = split.index.file_names[0].as_py()
    shard = folder / split.manifest["shards"][int(split.shard_of[0])]["file"]
    data = bytearray(shard.read_bytes())
    start = data.find(split.read(0))
    data[start:start + 4] = b"\0\0\0\0"
    shard.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="ssdzoo"):
        calibration = calibration_images(tmp_path / "packed", cfg, count=10)
    assert len(calibration.images) == 9 and calibration.source.endswith("(9 of 10 images)")
    assert f"image {name} cannot be decoded" in caplog.text


def test_calibration_uses_the_training_split_and_any_classes(tmp_path, caplog):
    """--calibration PACKED_ROOT: the training split (not the split evaluated next), and a
    dataset of other classes than the model's (calibration needs pixels only)."""
    from ssdzoo.data import prepare_coco
    from tiny import tiny_config

    make_synthetic_coco(tmp_path / "raw", seed=4, num_train=6, num_val=3, progress=False,
                        spec=SynthSpec(min_side=48, max_side=64, min_object=10.0))
    prepare_coco(tmp_path / "raw", tmp_path / "packed")
    cfg = tiny_config("classes=[background,cat,dog]")  # not circle, square, triangle
    calibration = calibration_images(tmp_path / "packed", cfg, count=4)
    assert calibration.source.endswith("train2017 (4 of 6 images)")
    assert calibration_images(tmp_path / "raw", cfg, count=4).source.endswith("(4 of 6 images)")
    for split in ("train2017", "val2017"):  # the names `prepare voc` and `prepare yolo` give
        (tmp_path / "packed" / split).rename(tmp_path / "packed" / split.removesuffix("2017"))
    assert calibration_images(tmp_path / "packed", cfg, count=9).source.endswith("train (6 of 6 images)")


def test_quantizing_logs_nothing_of_onnxruntimes_own(cfg, tmp_path, caplog):
    """onnxruntime's quantizer logs each bias it copies and weight scale it raises through the
    root logger at INFO: none of that reaches the user's terminal (the CLI logs at INFO)."""
    from ssdzoo.export import export_onnx
    from ssdzoo.inference import preprocess
    from ssdzoo.quantize import Calibration, quantize_onnx
    from tiny import tiny_model

    model = tiny_model(cfg)
    with torch.no_grad():  # weights so small that a bias's int32 scale would underflow: scales raised
        for conv in model.head.cls_convs():
            conv.weight.mul_(1e-7)
    float_path = export_onnx(model, cfg, tmp_path / "float.onnx")
    calibration = Calibration(*preprocess(synthetic_images(seed=7), cfg), source="synthetic")
    with caplog.at_level(logging.INFO):
        quantize_onnx(float_path, tmp_path / "int8.onnx", calibration)
    noise = [r.getMessage() for r in caplog.records if r.name == "root"]
    assert noise == []
