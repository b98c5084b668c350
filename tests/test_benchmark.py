"""`ssdzoo benchmark` runs end to end on a tiny config and writes its record (no timing checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssdzoo import load_config
from ssdzoo.bench.inference_speed import TORCHVISION_NAME
from ssdzoo.bench.runner import format_table
from ssdzoo.bench.timing import torch_threads
from ssdzoo.bench.train_speed import bench_loader_training
from ssdzoo.cli import main
from ssdzoo.data import make_synthetic_coco

TINY = str(Path(__file__).parent / "tiny.yaml")


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> Path:
    """Four images of ``ssdzoo synth``'s three shapes, a raw COCO folder."""
    folder = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(folder, num_train=4, num_val=0, progress=False)
    return folder


@pytest.fixture(scope="module")
def record(tmp_path_factory, synth_data) -> dict:
    """One quick run with everything on: synthetic and loader training, PyTorch, onnxruntime
    and torchvision inference, box ops."""
    out = tmp_path_factory.mktemp("bench") / "out" / "bench.json"
    assert main(["benchmark", TINY, "--quick", "--threads", "1", "--batch", "2", "--throughput-batch", "2",
                 "--data", str(synth_data), "--workers", "0", "--predict-images", str(synth_data / "train2017"),
                 "--predict-workers", "0", "--json", str(out)]) == 0
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temporary file left
    return json.loads(out.read_text())


def test_record_has_every_measurement(record):
    assert set(record) == {"settings", "machine", "training", "inference", "box_ops", "predict", "comparisons"}
    assert record["settings"]["configs"] == [TINY]
    assert record["machine"]["torch_threads"] == 1

    training = record["training"]
    assert training["batch"] == 2
    assert set(training["variants"]) == {TINY, TORCHVISION_NAME}
    for variant in training["variants"].values():
        assert variant["img_per_s"] > 0 and variant["step"]["calls"] == 2
    loader = training["loader"][TINY]
    assert loader["images"] == 4 and loader["img_per_s"] > 0 and 0 <= loader["data_wait_share"] <= 1

    inference = record["inference"]
    names = {f"{TINY} PyTorch", f"{TINY} onnxruntime + postprocess", f"{TINY} onnxruntime --nms",
             f"{TINY} onnxruntime int8 + postprocess", TORCHVISION_NAME}
    assert set(inference["latency_batch1"]) == names == set(inference["throughput"]["variants"])
    assert inference["throughput"]["batch"] == 2
    # the three float ssdzoo paths give the same detections
    float_names = names - {TORCHVISION_NAME, f"{TINY} onnxruntime int8 + postprocess"}
    assert len({inference["latency_batch1"][n]["detections"] for n in float_names}) == 1
    assert len(inference["parts_batch1"]) == 5  # PyTorch's 3 stages, float32 and int8 graphs alone

    box_ops = record["box_ops"][TINY]
    assert box_ops["encode"]["labels_identical"]
    assert all(case["identical"] for case in box_ops["postprocess"]["cases"].values())

    predict = record["predict"][TINY]
    assert predict["images"] == 4 and set(predict["variants"]) == {
        "plain loop, drawing", "predict (0 workers), drawing", "plain loop, --no-draw", "predict (0 workers), --no-draw"}
    assert all(v["img_per_s"] > 0 for v in predict["variants"].values())

    # a quick run names each comparison and its goal, but judges none
    goals = {c["what"]: c["goal"] for c in record["comparisons"]}
    assert goals == {
        f"{TINY} PyTorch batch-1 latency / torchvision's": "<= 1.0",
        f"{TINY} onnxruntime (faster float graph) batch-1 latency / torchvision's": "<= 0.5",
        f"{TINY} training img/s / torchvision's (batch 2)": ">= 1.0",
        f"{TINY} int8 / float32 onnxruntime batch-1 latency (graph alone)": "<= 0.6",
        f"{TINY} predict img/s / the plain loop's, drawing": ">= 1.5",
        f"{TINY} predict img/s / the plain loop's, --no-draw": ">= 1.5"}
    assert all(c["verdict"] == "too few steps to judge" and c["met"] is None for c in record["comparisons"])
    table = format_table(record)
    assert "too few steps to judge" in table and "comparisons" in table
    assert "issue" not in table and " met" not in table


def test_verdicts_need_enough_timed_calls():
    from ssdzoo.bench.runner import _ratio

    many, few = {"median_ms": 5.0, "calls": 50}, {"median_ms": 5.0, "calls": 4}
    assert _ratio("x", many, {"median_ms": 10.0, "calls": 50}, at_most=0.6)["verdict"] == "met"
    assert _ratio("x", many, {"median_ms": 6.0, "calls": 50}, at_most=0.6)["verdict"] == "not met"
    assert _ratio("x", few, {"median_ms": 10.0, "calls": 50}, at_most=0.6)["verdict"] == "too few steps to judge"


def test_loader_run_takes_the_datasets_classes(synth_data):
    cfg = load_config(TINY).replace(classes=("background", "circle"), num_classes=2)
    with torch_threads(1):  # a second thread only waits on a busy machine
        result = bench_loader_training(cfg, synth_data, torch.device("cpu"), batch_size=2, channels_last=False,
                                       workers=0, steps=1, warmup=0)
    assert result["num_classes"] == 4 and result["steps"] == 1


def test_parts_can_be_left_out(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["benchmark", TINY, "--quick", "--threads", "1", "--no-onnx", "--no-torchvision", "--no-box-ops",
                 "--no-channels-last", "--throughput-batch", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert "box_ops" not in record and "predict" not in record and record["comparisons"] == []
    assert list(record["inference"]["latency_batch1"]) == [f"{TINY} PyTorch"]
    assert record["training"]["channels_last"] is False


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    assert main(["benchmark", str(tmp_path / "missing.yaml"), "--quick", "--json", str(tmp_path / "b.json")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
