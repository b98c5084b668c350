"""Your own data, end to end with the tiny recipe: a VOC and a YOLO folder -> prepare -> train with
classes from the data -> eval per class with PR curves and VOC's metric -> show; and a checkpoint
that knows its model (eval, predict without a config; export: test_export)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from data_helpers import SCENES, write_voc
from PIL import Image
from tiny import TINY_CONFIG, make_tiny_shapes

from ssdzoo.cli import main
from ssdzoo.config import load_config
from ssdzoo.data import PackedSplit, load_dataset, prepare_coco, prepare_voc
from ssdzoo.data.synthetic import SynthSpec, make_synthetic_coco
from ssdzoo.engine.checkpoint import load_checkpoint

SMALL = SynthSpec(min_side=64, max_side=96, min_object=12.0)


@pytest.fixture(scope="module", params=["voc", "yolo"])
def own_run(request, tmp_path_factory):
    """The shapes written as a VOC or YOLO folder, packed with `ssdzoo prepare`, trained one
    epoch with classes: null."""
    layout = request.param
    root = tmp_path_factory.mktemp(layout)
    make_synthetic_coco(root / "raw", seed=4, num_train=16, num_val=8, progress=False, spec=SMALL, layout=layout)
    source = [str(root / "raw")] if layout == "voc" else [str(root / "raw" / "data.yaml")]
    assert main(["prepare", layout, *source, str(root / "packed"), "--workers", "1"]) == 0
    assert main(["train", str(TINY_CONFIG), f"data_dir={root / 'packed'}", "classes=null", "num_classes=null",
                 "train_split=train", "val_split=val", f"ckpt_save_dir={root / 'run'}", "epoch_size=1",
                 "eval_while_train=true", "eval_start_epoch=1"]) == 0
    return root


def test_classes_come_from_the_data_and_go_into_the_checkpoint(own_run):
    ckpt = load_checkpoint(own_run / "run" / "last.pt")
    assert ckpt["config"]["classes"] == ["background", "circle", "square", "triangle"]
    assert ckpt["config"]["num_classes"] == 4
    assert load_config(own_run / "run" / "config.yaml").classes == ("background", "circle", "square", "triangle")


def test_eval_per_class_pr_curves_and_voc_metric(own_run, capsys):
    report = own_run / "metrics.json"
    assert main(["eval", "--checkpoint", str(own_run / "run" / "last.pt"), f"data_dir={own_run / 'packed'}",
                 "--metric", "voc", "--json", str(report)]) == 0  # no config: the checkpoint's
    out = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in out and "VOC mAP at IoU 0.5 (8 images" in out
    rows = [line.split()[0] for line in out.splitlines() if line.startswith((" circle", " square", " triangle"))]
    assert rows == ["circle", "square", "triangle"]
    metrics = json.loads(report.read_text())
    assert list(metrics["per_class"]) == ["circle", "square", "triangle"]
    for row in metrics["per_class"].values():
        assert set(row) == {"AP", "AP50", "voc07_AP50", "voc10_AP50"}
        assert all(v is None or 0.0 <= v <= 1.0 for v in row.values())
    assert 0.0 <= metrics["voc07_mAP50"] <= 1.0 and 0.0 <= metrics["voc10_mAP50"] <= 1.0
    assert metrics["data"].endswith("val")
    with Image.open(own_run / "metrics_pr.png") as plot:
        assert plot.format == "PNG"


# what does not depend on the layout runs on the VOC run only (the same fixture instance)
voc_only = pytest.mark.parametrize("own_run", ["voc"], indirect=True)


@voc_only
def test_show_draws_the_labels(own_run, capsys):
    out = own_run / "show.png"
    assert main(["show", str(own_run / "packed"), "--out", str(out), "-n", "4", "--cell", "96"]) == 0
    assert capsys.readouterr().out.startswith(f"4 samples of {own_run / 'packed' / 'train'} (as stored)")
    with Image.open(out) as image:
        assert image.size == (4 * 100 + 4, 96 + 16 + 4 + 4)  # 4 columns
    assert main(["show", str(own_run / "packed" / "val"), "--out", str(out), "--augment", "-n", "30",
                 "--config", str(TINY_CONFIG)]) == 0
    assert "8 samples of" in capsys.readouterr().out  # all the split has


@voc_only
def test_predict_from_the_checkpoint_alone(own_run, capsys, tmp_path):
    ckpt = own_run / "run" / "last.pt"
    images = sorted((own_run / "raw").rglob("*.jpg"))[:2]
    assert main(["predict", "--checkpoint", str(ckpt), *map(str, images), "--out", str(tmp_path / "p")]) == 0
    assert json.loads((tmp_path / "p" / "detections.json").read_text()) is not None
    capsys.readouterr()
    assert main(["predict", "ssd_mobilenetv2", "--checkpoint", str(ckpt), str(images[0]), "--out",
                 str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "was trained as test_efficientnet + SSD extras, 64x64, 3 classes " \
        "(circle, square, triangle); the config ssd_mobilenetv2 builds mobilenetv2_100" in err
    assert "missing" not in err
    # a recipe with classes from the data takes the checkpoint's
    assert main(["predict", str(TINY_CONFIG), "--set", "classes=null", "--set", "num_classes=null",
                 "--checkpoint", str(ckpt), str(images[0]), "--out", str(tmp_path / "r")]) == 0


@voc_only
def test_class_names_that_differ_are_an_error_and_one_split_is_said_loudly(own_run, caplog):
    named = load_config(TINY_CONFIG, ["classes=[background,cat,dog,bird]", f"data_dir={own_run / 'packed'}",
                                      "train_split=train", "val_split=val"])
    with pytest.raises(ValueError, match=r"classes \['circle', 'square', 'triangle'\] are not the config's "
                                         r"\['cat', 'dog', 'bird'\].*classes: null"):
        load_dataset(None, named, True)
    cfg = load_config(TINY_CONFIG, ["train_split=train", "val_split=val"])
    with caplog.at_level(logging.INFO):
        dataset = load_dataset(own_run / "packed" / "train", cfg, False)  # val beside it: that one
    assert dataset.source.endswith("val") and "reads split val beside it" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        dataset = load_dataset(own_run / "packed" / "train", cfg.replace(val_split="test"), False)
    assert dataset.source.endswith("train") and "WARNING" in caplog.text and "in place of 'test'" in caplog.text


@pytest.fixture(scope="module")
def damaged_split(tmp_path_factory):
    """Packed shapes whose first training image lost its JPEG header (bit rot in a shard).
    Returns (the split folder, the image's file name)."""
    root = tmp_path_factory.mktemp("damaged")
    prepare_coco(make_tiny_shapes(root / "shapes"), root / "packed", progress=False)
    folder = root / "packed" / "train2017"
    split = PackedSplit(folder)
    shard = folder / split.manifest["shards"][int(split.shard_of[0])]["file"]
    data = bytearray(shard.read_bytes())
    start = data.find(split.read(0))
    data[start:start + 4] = b"\0\0\0\0"
    shard.write_bytes(bytes(data))
    return folder, split.index.file_names[0].as_py()


@pytest.mark.parametrize("augment", [[], ["--augment"]])
def test_show_leaves_out_a_damaged_image_and_names_it(damaged_split, augment, tmp_path, capsys, caplog):
    folder, name = damaged_split
    out = tmp_path / "show.png"
    with caplog.at_level(logging.INFO):
        assert main(["show", str(folder), "--out", str(out), "-n", "16", "--cell", "32", *augment]) == 0
    assert f"image {name} cannot be decoded (not an image (unknown format)): skipped" in caplog.text
    assert capsys.readouterr().out.startswith(f"15 samples of {folder}")  # the other 15 of the split
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_show_with_nothing_decodable_or_a_wrong_out_is_a_one_line_error(damaged_split, tmp_path, capsys):
    folder, name = damaged_split
    seed = next(s for s in range(1000) if np.random.default_rng(s).choice(16, size=1, replace=False)[0] == 0)
    out = tmp_path / "show.png"
    assert main(["show", str(folder), "--out", str(out), "-n", "1", "--seed", str(seed)]) == 2  # draws it alone
    assert f"none of the 1 images drawn could be decoded (first: {name}: not an image" in capsys.readouterr().err
    assert not out.exists()
    assert main(["show", str(tmp_path / "nowhere"), "--out", str(tmp_path / "show.jpg")]) == 2  # before the data
    err = capsys.readouterr().err.strip()
    assert err == f"ssdzoo show: error: --out {tmp_path / 'show.jpg'}: expected a .png file name"


def test_a_voc_size_no_number_can_hold_is_taken_from_the_image(tmp_path):
    year = write_voc(tmp_path / "VOC2007")
    for stem, key, text in (("0001", "width", "inf"), ("0003", "height", "1e400")):
        xml = year / "Annotations" / f"{stem}.xml"
        width, height, _ = SCENES[stem]
        given = {"width": width, "height": height}[key]
        xml.write_text(xml.read_text().replace(f"<{key}>{given}</{key}>", f"<{key}>{text}</{key}>"))
    assert prepare_voc(year, tmp_path / "out")["train"]["skipped"] == []
    index = PackedSplit(tmp_path / "out" / "train").index
    sizes = {n.rsplit("/", 1)[-1][:4]: (int(w), int(h))
             for n, w, h in zip(index.file_names.to_pylist(), index.widths, index.heights)}
    assert sizes == {stem: (width, height) for stem, (width, height, _) in SCENES.items()}


def test_show_on_a_raw_dataset_says_which_prepare_packs_it(own_run, capsys):
    """`ssdzoo show data.yaml` (or a VOC folder) is not a packed dataset: say how to make one."""
    raw = own_run / "raw"
    data = raw / "data.yaml" if (raw / "data.yaml").exists() else raw
    assert main(["show", str(data), "--out", str(own_run / "s.png")]) == 2
    err = capsys.readouterr().err
    layout = "yolo" if data.suffix else "voc"
    assert f"pack it first with `ssdzoo prepare {layout} {data} OUT`, then `ssdzoo show OUT`" in err, err
    assert main(["show", str(own_run / "nowhere"), "--out", str(own_run / "s.png")]) == 2
    assert f"{own_run / 'nowhere'} does not exist" in capsys.readouterr().err


@voc_only
def test_eval_with_a_named_config_says_where_data_dir_came_from(own_run, capsys):
    """A config named on the command line wins over the checkpoint's: a data_dir it lacks says so."""
    ckpt = own_run / "run" / "last.pt"
    assert main(["eval", str(TINY_CONFIG), "--checkpoint", str(ckpt), "classes=null", "num_classes=null",
                 "train_split=train", "val_split=val"]) == 2
    err = capsys.readouterr().err
    assert f"is the config {TINY_CONFIG}'s: a config named on the command line wins over the one saved in " \
           f"--checkpoint ({ckpt} was trained on data_dir={own_run / 'packed'}); give data_dir=DIR" in err, err
