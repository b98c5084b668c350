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
                 "--data", str(synth_data), "--workers", "0", "--json", str(out)]) == 0
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temporary file left
    return json.loads(out.read_text())


def test_record_has_every_measurement(record):
    assert set(record) == {"settings", "machine", "training", "inference", "box_ops", "targets"}
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
    names = {f"{TINY} PyTorch", f"{TINY} onnxruntime + postprocess", f"{TINY} onnxruntime --nms", TORCHVISION_NAME}
    assert set(inference["latency_batch1"]) == names == set(inference["throughput"]["variants"])
    assert inference["throughput"]["batch"] == 2
    # the three ssdzoo paths give the same detections
    assert len({inference["latency_batch1"][n]["detections"] for n in names - {TORCHVISION_NAME}}) == 1
    assert len(inference["parts_batch1"]) == 3

    box_ops = record["box_ops"][TINY]
    assert box_ops["encode"]["labels_identical"]
    assert all(case["identical"] for case in box_ops["postprocess"]["cases"].values())

    assert {t["goal"] for t in record["targets"]} == {"<= 1.0", "<= 0.5", ">= 1.0"}
    assert "targets (issue 5)" in format_table(record)


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
    assert "box_ops" not in record and record["targets"] == []
    assert list(record["inference"]["latency_batch1"]) == [f"{TINY} PyTorch"]
    assert record["training"]["channels_last"] is False


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    assert main(["benchmark", str(tmp_path / "missing.yaml"), "--quick", "--json", str(tmp_path / "b.json")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
