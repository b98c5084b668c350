"""The synthetic demo set: deterministic, COCO-format, real JPEGs, learnable shapes."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from ssdzoo.cli import main
from ssdzoo.config import load_config
from ssdzoo.data.synthetic import SHAPES, SynthSpec, make_synthetic_coco, render_image

SMALL = SynthSpec(min_side=64, max_side=96, min_object=10)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_any_workers(tmp_path):
    make_synthetic_coco(tmp_path / "a", seed=5, num_train=12, num_val=4, spec=SMALL)
    make_synthetic_coco(tmp_path / "b", seed=5, num_train=12, num_val=4, spec=SMALL, workers=2)
    make_synthetic_coco(tmp_path / "c", seed=6, num_train=12, num_val=4, spec=SMALL)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b and len(a) == 12 + 4 + 2
    assert a.keys() == c.keys() and a != c


def test_coco_layout_and_boxes(tmp_path):
    summary = make_synthetic_coco(tmp_path, seed=0, num_train=40, num_val=5, spec=SMALL)
    coco = json.loads((tmp_path / "annotations" / "instances_train2017.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(SHAPES)
    assert list(load_config("demo").classes[1:]) == list(SHAPES)  # demo.yaml names them in this order
    sizes = {}
    for image in coco["images"]:
        with Image.open(tmp_path / "train2017" / image["file_name"]) as f:
            assert f.format == "JPEG" and f.mode == "RGB" and f.size == (image["width"], image["height"])
            sizes[image["id"]] = f.size
    per_image = {}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        width, height = sizes[ann["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= width + 0.01 and y + h <= height + 0.01 and w >= 5 and h >= 5
        per_image.setdefault(ann["image_id"], []).append([x, y, x + w, y + h])
    assert {a["category_id"] for a in coco["annotations"]} == {1, 2, 3}
    assert summary["train2017"]["boxes"] == len(coco["annotations"]) and summary["train2017"]["small_boxes"] > 0
    overlapping = sum(_overlaps(boxes) for boxes in per_image.values())
    assert overlapping > 0 and max(map(len, per_image.values())) >= 4
    val = json.loads((tmp_path / "annotations" / "instances_val2017.json").read_text())
    assert not {i["id"] for i in val["images"]} & set(sizes)  # ids unique across splits


def _overlaps(boxes):
    b = np.array(boxes)
    inter_w = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    inter_h = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    hit = (inter_w > 0) & (inter_h > 0)
    return int(hit.sum() - len(b)) // 2


def test_objects_stand_out_from_the_background():
    rng = np.random.default_rng(0)
    contrasts = []
    for _ in range(20):
        pixels, objects = render_image(rng, SMALL)
        for obj in objects:
            x, y, w, h = (int(round(v)) for v in obj["bbox"])
            inner = pixels[y + h // 3:y + 2 * h // 3, x + w // 3:x + 2 * w // 3].reshape(-1, 3).mean(0)
            contrasts.append(np.abs(inner - pixels.reshape(-1, 3).mean(0)).max())
    assert np.median(contrasts) > 40  # of 255


def test_synth_command(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--seed", "2", "--train", "3", "--val", "2"]) == 0
    assert "train2017: 3 images" in capsys.readouterr().out
    assert len(list((tmp_path / "val2017").glob("*.jpg"))) == 2


def test_synth_refuses_a_folder_in_use_and_overwrite_replaces_it_whole(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["synth", str(out), "--train", "4", "--val", "2"]) == 0
    (out / "notes.txt").write_text("mine")
    before = _files(out)
    assert main(["synth", str(out), "--train", "2", "--val", "1"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err
    assert _files(out) == before  # nothing touched
    assert main(["synth", str(out), "--train", "2", "--val", "1", "--overwrite"]) == 0
    after = _files(out)
    assert len([f for f in after if f.endswith(".jpg")]) == 3 and "notes.txt" not in after  # no old JPEGs left
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]  # no staging folder left beside it


def test_an_interrupted_synth_leaves_the_old_folder(tmp_path, monkeypatch):
    import ssdzoo.data.synthetic as synthetic

    out = tmp_path / "shapes"
    make_synthetic_coco(out, num_train=2, num_val=1, spec=SMALL, progress=False)
    before = _files(out)
    monkeypatch.setattr(synthetic, "_coco_json", lambda results: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        make_synthetic_coco(out, num_train=3, num_val=1, spec=SMALL, progress=False, overwrite=True)
    except KeyboardInterrupt:
        pass
    assert _files(out) == before and [p.name for p in tmp_path.iterdir()] == ["shapes"]
