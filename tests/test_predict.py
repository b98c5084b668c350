"""`ssdzoo predict`: drawn images, COCO results JSON, skipped files; drawing; category ids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import TINY_CONFIG

from ssdzoo.cli import main
from ssdzoo.export import synthetic_images
from ssdzoo.inference import Predictor
from ssdzoo.postprocess import Detections
from ssdzoo.engine.evaluate import coco_results
from ssdzoo.predict import collect_images, image_ids, read_category_ids
from ssdzoo.visualize import class_colour, draw_boxes, draw_detections

SET = ["--set", "max_boxes=50"]  # config overrides come with --set (the images are positional)


@pytest.fixture()
def inputs(tmp_path, model):
    """A checkpoint, a folder with a JPEG, a PNG and a text file posing as a JPEG, one more PNG."""
    checkpoint = tmp_path / "model.pt"
    torch.save({"model": model.state_dict()}, checkpoint)
    folder = tmp_path / "images"
    folder.mkdir()
    first, second, third = synthetic_images(seed=2, sizes_hw=((48, 64), (96, 80), (70, 50)))
    Image.fromarray(first).save(folder / "street.jpg")
    Image.fromarray(second).save(folder / "park.png")
    (folder / "broken.jpg").write_text("not an image")
    (folder / "readme.txt").write_text("ignored: not an image file name")
    Image.fromarray(third).save(tmp_path / "extra.png")
    return checkpoint, folder, tmp_path / "extra.png"


def test_predict_writes_images_and_coco_json(inputs, cfg, model, tmp_path, capsys, caplog):
    checkpoint, folder, extra = inputs
    out = tmp_path / "out"
    code = main(["predict", str(TINY_CONFIG), "--checkpoint", str(checkpoint), str(folder), str(extra),
                 "--out", str(out), "--score", "0.5", *SET])
    assert code == 0
    assert "broken.jpg" in caplog.text and "not a readable image" in caplog.text
    assert "skipped 1" in capsys.readouterr().out

    # names relative to the inputs' common folder (tmp_path): images/..., extra.png
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["detections.json", "detections.jsonl", "extra.png", "images/park.png", "images/street.jpg",
                       "predict_run.json"]
    for name, size in (("images/street.jpg", (64, 48)), ("images/park.png", (80, 96)), ("extra.png", (50, 70))):
        with Image.open(out / name) as drawn:
            assert drawn.format == ("JPEG" if name.endswith(".jpg") else "PNG")
            assert drawn.size == size

    rows = json.loads((out / "detections.json").read_text())
    assert rows and {tuple(sorted(r)) for r in rows} == {
        ("bbox", "category_id", "file_name", "image_id", "score")}
    assert {r["file_name"] for r in rows} <= {"images/street.jpg", "images/park.png", "extra.png"}
    assert all(r["score"] > cfg.min_score and 1 <= r["category_id"] <= 3 for r in rows)
    assert all(w >= 0 and h >= 0 and x >= 0 and y >= 0 for r in rows for x, y, w, h in [r["bbox"]])

    # the JSON holds everything the Predictor finds at the config's min_score ...
    files = [p for p in collect_images([folder, extra]) if p.name != "broken.jpg"]
    pictures = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    expected = Predictor(cfg.replace(max_boxes=50), model).predict(pictures)
    assert len(rows) == sum(len(d.scores) for d in expected)
    assert any(float(s) <= 0.5 for d in expected for s in d.scores)  # some under the drawing threshold
    # ... and the pictures show only the boxes over --score (PNG: pixel for pixel)
    k = [p.name for p in files].index("park.png")
    want = np.asarray(draw_detections(pictures[k], expected[k], cfg.classes, min_score=0.5))
    assert (np.asarray(Image.open(out / "images/park.png")) == want).all()

    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert sorted(line["file_name"] for line in lines) == ["extra.png", "images/broken.jpg", "images/park.png",
                                                           "images/street.jpg"]
    (error,) = [line for line in lines if "error" in line]
    assert "not a readable image" in error["error"]


def test_same_names_in_different_folders_are_told_apart(inputs, tmp_path):
    checkpoint, folder, _ = inputs
    for side in ("a", "b/deeper"):
        (tmp_path / side).mkdir(parents=True)
        Image.open(folder / "park.png").save(tmp_path / side / "bus.png")
    out = tmp_path / "out"
    assert main(["predict", str(TINY_CONFIG), "--checkpoint", str(checkpoint), str(tmp_path / "a"),
                 str(tmp_path / "b"), "--out", str(out), *SET]) == 0
    assert (out / "a" / "bus.png").is_file() and (out / "b" / "deeper" / "bus.png").is_file()
    rows = json.loads((out / "detections.json").read_text())
    assert {r["file_name"] for r in rows} == {"a/bus.png", "b/deeper/bus.png"}
    assert len({r["image_id"] for r in rows}) == 2


def test_no_draw_writes_the_detections_only(inputs, tmp_path):
    checkpoint, folder, _ = inputs
    out = tmp_path / "out"
    assert main(["predict", str(TINY_CONFIG), "--checkpoint", str(checkpoint), str(folder), "--out", str(out),
                 "--no-draw", "--workers", "0", *SET]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "detections.jsonl", "predict_run.json"]


def test_score_out_of_range_names_the_option(inputs, tmp_path, capsys):
    checkpoint, folder, _ = inputs
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(TINY_CONFIG), "--checkpoint", str(checkpoint), str(folder), "--out",
              str(tmp_path / "out"), "--score", "2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--score" in err and "[0, 1]" in err and "got 2" in err and "min_score" not in err


def test_nothing_readable_is_an_error_with_the_reason(inputs, tmp_path, capsys):
    checkpoint, _, _ = inputs
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list")
    out = tmp_path / "out"
    code = main(["predict", str(TINY_CONFIG), "--checkpoint", str(checkpoint), str(notes), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "no input could be read" in err and "notes.txt" in err and "not a readable image" in err
    assert not (out / "detections.json").exists()


def test_predict_missing_input_is_a_clear_error(inputs, tmp_path, capsys):
    checkpoint, _, _ = inputs
    code = main(["predict", str(TINY_CONFIG), "--checkpoint", str(checkpoint), str(tmp_path / "nope.jpg"),
                 "--out", str(tmp_path / "out"), *SET])
    assert code == 2 and "nope.jpg" in capsys.readouterr().err


def test_coco_results_and_category_ids(cfg, tmp_path):
    detections = Detections(torch.tensor([[10.0, 20.0, 30.0, 60.0]]), torch.tensor([0.9]), torch.tensor([2]))
    (row,) = coco_results([detections], [7], file_names=["a.jpg"])
    assert row == {"image_id": 7, "file_name": "a.jpg", "category_id": 2, "bbox": [10.0, 20.0, 20.0, 40.0],
                   "score": pytest.approx(0.9)}

    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps({"categories": [
        {"id": 5, "name": "triangle"}, {"id": 3, "name": "circle"}, {"id": 4, "name": "square"}]}))
    ids = read_category_ids(annotations, cfg)  # cfg.classes: background, circle, square, triangle
    assert ids == [3, 4, 5]
    assert coco_results([detections], [7], category_ids=ids)[0]["category_id"] == 4

    as_list = tmp_path / "ids.json"
    as_list.write_text("[11, 12, 13]")
    assert read_category_ids(as_list, cfg) == [11, 12, 13]
    as_list.write_text("[11, 12]")
    with pytest.raises(ValueError, match="ids.json"):
        read_category_ids(as_list, cfg)


def test_image_ids_use_coco_numbers_when_every_name_is_one(tmp_path):
    assert image_ids([tmp_path / "000000397133.jpg", tmp_path / "000000000139.jpg"]) == [397133, 139]
    assert image_ids([tmp_path / "000000397133.jpg", tmp_path / "cat.jpg"]) == [1, 2]


def test_draw_detections_draws_in_the_class_colour_and_leaves_the_input():
    image = np.full((60, 80, 3), 255, np.uint8)
    detections = Detections(torch.tensor([[10.0, 30.0, 50.0, 55.0], [0.0, 0.0, 5.0, 5.0]]),
                            torch.tensor([0.8, 0.05]), torch.tensor([3, 1]))
    drawn = np.asarray(draw_detections(image, detections, ["background", "a", "b", "c"], min_score=0.1))
    assert (image == 255).all()
    assert tuple(drawn[55, 30]) == class_colour(3)  # bottom edge of the box
    assert (drawn[2, 2] == 255).all()  # the 0.05 box is under min_score: not drawn
    assert len({class_colour(label) for label in range(1, 81)}) == 80


def test_a_box_stays_visible_on_a_picture_of_its_own_colour():
    """A thin box in its class colour on a photo of that colour is edged in black or white."""
    colour = class_colour(1)
    for background in (colour, (250, 250, 250), (5, 5, 5)):
        image = np.empty((100, 120, 3), np.uint8)
        image[:] = background
        drawn = np.asarray(draw_detections(image, Detections(torch.tensor([[20.0, 40.0, 100.0, 90.0]]),
                                                             torch.tensor([0.9]), torch.tensor([1])),
                                           ["background", "a"]), dtype=float)
        luma = drawn @ np.array([0.299, 0.587, 0.114])
        row = luma[85:95, 60]  # across the bottom edge, from inside the box to outside it
        assert np.abs(row - np.dot(background, [0.299, 0.587, 0.114])).max() > 100, (background, row)


def _label_text_columns(drawn: np.ndarray) -> np.ndarray:
    """Columns (from the label's left edge) holding text of the blue label drawn above the box."""
    drawn = drawn.astype(int)
    fill = np.abs(drawn - np.array(class_colour(1))).sum(-1) < 30
    rows = np.flatnonzero(fill[:58].sum(1) > 20)
    cols = np.flatnonzero(fill[rows].any(0))
    label = drawn[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    return np.flatnonzero((label.min(-1) > 150).any(0))  # white text on the blue label


def test_a_label_reads_name_then_score():
    """"class_1 0.90" must not read "class_ 10.90": the gap between the name and the score is
    clearly wider than any gap inside the name (its underscore's, before the 1)."""
    image, box = np.zeros((120, 320, 3), np.uint8), torch.tensor([[10.0, 60.0, 300.0, 110.0]])
    name_only = _label_text_columns(np.asarray(draw_boxes(image, box.tolist(), [1], ["background", "class_1"])))
    full = _label_text_columns(np.asarray(draw_detections(image, Detections(box, torch.tensor([0.9]),
                                                                           torch.tensor([1])),
                                                          ["background", "class_1"])))
    name_end = name_only.max()
    score_start = full[full > name_end].min()
    inside_name = (np.diff(name_only) - 1).max()
    assert score_start - name_end - 1 >= 1.4 * inside_name, (score_start - name_end - 1, inside_name)


def test_predict_summary_line_counts_and_names_the_folder(inputs, tmp_path, capsys):
    checkpoint, folder, extra = inputs
    assert main(["predict", str(TINY_CONFIG), "--checkpoint", str(checkpoint), str(extra), "--out",
                 f"{tmp_path / 'out'}/", *SET]) == 0
    assert f"1 image predicted into {tmp_path / 'out'}/, boxes over" in capsys.readouterr().out
