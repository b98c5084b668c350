"""predict at scale: loader workers, detections.jsonl streamed per batch, --resume after a crash."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ssdzoo.export import synthetic_images
from ssdzoo.inference import Predictor
from ssdzoo.predict import run_predict
from ssdzoo.predict_stream import read_lines

NUM_IMAGES = 24


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """24 small pictures in two subfolders, JPEG and PNG."""
    root = tmp_path_factory.mktemp("images")
    for i, image in enumerate(synthetic_images(seed=5, sizes_hw=[(40 + i, 56 + 2 * i) for i in range(NUM_IMAGES)])):
        sub = root / ("jpeg" if i % 2 else "png")
        sub.mkdir(exist_ok=True)
        Image.fromarray(image).save(sub / f"{i:03d}.{'jpg' if i % 2 else 'png'}")
    return root


@pytest.fixture(scope="module")
def predictor(cfg, model):
    return Predictor(cfg.replace(max_boxes=20), model)


@pytest.fixture(scope="module")
def reference(predictor, folder, tmp_path_factory):
    """An uninterrupted run in this process: (detections.json rows, the output folder)."""
    out = tmp_path_factory.mktemp("reference")
    summary = run_predict(predictor, [folder], out, batch_size=4, workers=0)
    assert summary.images == NUM_IMAGES and summary.num_detections > 0
    return json.loads((out / "detections.json").read_text()), out


def test_worker_processes_give_the_same_results(predictor, folder, reference, tmp_path):
    run_predict(predictor, [folder], tmp_path, batch_size=5, workers=2)
    rows = json.loads((tmp_path / "detections.json").read_text())
    # the same rows; the network may run with fewer threads beside the workers (float rounding)
    assert [(r["file_name"], r["image_id"], r["category_id"]) for r in rows] == [
        (r["file_name"], r["image_id"], r["category_id"]) for r in reference[0]]
    np.testing.assert_allclose([r["bbox"] + [r["score"]] for r in rows],
                               [r["bbox"] + [r["score"]] for r in reference[0]], atol=2e-3, rtol=0)
    for drawn in reference[1].rglob("*.png"):
        mine = np.asarray(Image.open(tmp_path / drawn.relative_to(reference[1])), dtype=float)
        assert np.abs(mine - np.asarray(Image.open(drawn), dtype=float)).mean() < 0.5


def test_resume_after_a_crash_ends_with_the_same_detections(predictor, folder, reference, tmp_path, monkeypatch):
    calls = {"n": 0}
    predict_batch = predictor.predict_batch

    def crash_on_the_fourth_batch(batch, image_hw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("power cut")
        return predict_batch(batch, image_hw)

    monkeypatch.setattr(predictor, "predict_batch", crash_on_the_fourth_batch)
    with pytest.raises(RuntimeError, match="power cut"):
        run_predict(predictor, [folder], tmp_path, batch_size=4, workers=0)
    monkeypatch.undo()
    done = read_lines(tmp_path / "detections.jsonl")
    assert 0 < len(done) < NUM_IMAGES and not (tmp_path / "detections.json").exists()
    with open(tmp_path / "detections.jsonl", "a", encoding="utf-8") as f:
        f.write('{"file_name": "png/022.png", "sou')  # killed in the middle of a line

    summary = run_predict(predictor, [folder], tmp_path, batch_size=4, workers=0, resume=True)
    assert summary.resumed == len(done) and summary.images == NUM_IMAGES - len(done)
    assert json.loads((tmp_path / "detections.json").read_text()) == reference[0]
    assert len(read_lines(tmp_path / "detections.jsonl")) == NUM_IMAGES
    assert not list(tmp_path.rglob(".*.tmp"))  # no temporary file left


def test_resume_refuses_other_settings(predictor, folder, reference, tmp_path):
    _, out = reference
    with pytest.raises(ValueError, match="min_score"):
        run_predict(Predictor(predictor.cfg, predictor.network.model, min_score=0.5), [folder], out, resume=True)
    # a finished run resumed does nothing and keeps its results
    summary = run_predict(predictor, [folder], out, resume=True, workers=0)
    assert summary.images == 0 and summary.resumed == NUM_IMAGES
    assert json.loads((out / "detections.json").read_text()) == reference[0]


def test_resume_into_a_new_folder_starts_a_run(predictor, folder, reference, tmp_path):
    """One command for a requeued job's first start and its restarts (as train --resume auto)."""
    summary = run_predict(predictor, [folder], tmp_path / "new", batch_size=4, workers=0, resume=True)
    assert summary.images == NUM_IMAGES and summary.resumed == 0
    assert json.loads((tmp_path / "new" / "detections.json").read_text()) == reference[0]
    # results without the settings that made them are still refused
    (tmp_path / "new" / "predict_run.json").unlink()
    with pytest.raises(ValueError, match="predict_run.json not found"):
        run_predict(predictor, [folder], tmp_path / "new", workers=0, resume=True)


def test_predict_command_resume_starts_and_continues(model, folder, tmp_path, capsys):
    """`ssdzoo predict ... --resume` into an empty folder predicts everything; run again, nothing."""
    import torch
    from tiny import TINY_CONFIG

    from ssdzoo.cli import main

    torch.save({"model": model.state_dict()}, tmp_path / "model.pt")
    command = ["predict", str(TINY_CONFIG), "--checkpoint", str(tmp_path / "model.pt"), str(folder),
               "--out", str(tmp_path / "preds"), "--resume", "--no-draw", "--workers", "0"]
    assert main(command) == 0
    assert len(read_lines(tmp_path / "preds" / "detections.jsonl")) == NUM_IMAGES
    capsys.readouterr()
    assert main(command) == 0
    assert f"{NUM_IMAGES} inputs done by the earlier run" in capsys.readouterr().out


def test_resume_refuses_inputs_whose_image_ids_changed(predictor, folder, tmp_path):
    inputs = tmp_path / "in"
    shutil.copytree(folder, inputs)
    run_predict(predictor, [inputs], tmp_path / "out", workers=0, draw=False)
    # a name that is not a number: every image is numbered 1, 2, ... in order now, not by its name
    Image.new("RGB", (40, 30)).save(inputs / "png" / "extra.png")
    changed = r"inputs changed since the earlier run \((jpeg|png)/\d+\.(jpg|png) was image \d+, now \d+\)"
    with pytest.raises(ValueError, match=changed):
        run_predict(predictor, [inputs], tmp_path / "out", workers=0, draw=False, resume=True)


def test_output_folder_inside_the_input_folder_is_not_read(predictor, folder, tmp_path):
    import shutil

    root = tmp_path / "photos"
    shutil.copytree(folder / "png", root)
    run_predict(predictor, [root], root / "preds", workers=0)
    summary = run_predict(predictor, [root], root / "preds", workers=0)  # again: its own pictures stay out
    assert summary.images == NUM_IMAGES // 2


@pytest.mark.parametrize("cores, draw, expected", [(1, True, 0), (2, True, 1), (2, False, 0), (4, True, 2),
                                                   (4, False, 2), (16, True, 2)])
def test_default_workers_leave_a_cpu_network_on_two_cores_alone(predictor, monkeypatch, cores, draw, expected):
    # on 2 cores the network's threads already use both: loader processes beside them were
    # measured slower than none, one drawing process faster for photo-sized pictures (README)
    monkeypatch.setattr("ssdzoo.predict.available_cores", lambda: cores)
    from ssdzoo.predict import default_workers

    assert default_workers(predictor, draw=draw) == expected
