"""`ssdzoo prepare` for COCO exports, Pascal VOC and YOLO: each format's quirks, one packed result,
per-class counts, and EXIF orientation wherever images are read."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from data_helpers import (CLASSES, SCENES, encode, make_faulty_coco, noise_image, oriented_jpeg, scene_image, voc_object,
                          write_coco_export, write_voc, write_yolo)
from PIL import Image, ImageOps

from ssdzoo.cli import main
from ssdzoo.config import config_from_dict
from ssdzoo.data import PackedSplit, load_dataset, prepare_coco, prepare_coco_export, prepare_voc, prepare_yolo
from ssdzoo.data.images import CropRect, decode
from ssdzoo.data.voc import VOC_CLASSES
from ssdzoo.inference import load_image


def _boxes_by_file(split: PackedSplit) -> dict[str, list[tuple]]:
    """file stem -> [(class name, x1, y1, x2, y2)] of the training boxes."""
    index, names = split.index, [c["name"] for c in split.index.categories]
    out = {}
    for i, file_name in enumerate(index.file_names.to_pylist()):
        boxes, labels = index.boxes_of(i)
        out[file_name.rsplit("/", 1)[-1].split(".")[0]] = sorted(
            (names[label - 1], *map(float, box)) for box, label in zip(boxes.tolist(), labels.tolist()))
    return out


def _expected() -> dict[str, list[tuple]]:
    return {stem: sorted((n, float(x1), float(y1), float(x2), float(y2)) for n, x1, y1, x2, y2 in boxes)
            for stem, (_, _, boxes) in SCENES.items()}


def _pixels(split: PackedSplit) -> dict[str, np.ndarray]:
    return {name.rsplit("/", 1)[-1].split(".")[0]: decode(split.read(i)).image.numpy()
            for i, name in enumerate(split.index.file_names.to_pylist())}


@pytest.fixture(scope="module")
def all_formats(tmp_path_factory):
    """SCENES written as a Roboflow export, a CVAT export, a VOC folder and a YOLO dataset, each packed."""
    root = tmp_path_factory.mktemp("formats")
    packed = {}
    prepare_coco_export(write_coco_export(root / "roboflow"), root / "out-roboflow", split="train")
    packed["roboflow"] = PackedSplit(root / "out-roboflow" / "train")
    prepare_coco_export(write_coco_export(root / "cvat", roboflow=False), root / "out-cvat", split="train")
    packed["cvat"] = PackedSplit(root / "out-cvat" / "train")
    prepare_voc(write_voc(root / "VOCdevkit" / "VOC2007"), root / "out-voc")
    packed["voc"] = PackedSplit(root / "out-voc" / "train")
    prepare_yolo(write_yolo(root / "yolo"), root / "out-yolo")
    packed["yolo"] = PackedSplit(root / "out-yolo" / "train")
    return root, packed


@pytest.mark.parametrize("name", ["roboflow", "cvat", "voc", "yolo"])
def test_every_format_packs_the_same_images_and_boxes(all_formats, name):
    _, packed = all_formats
    split = packed[name]
    classes = ["bird", "cat", "fish", "dog"] if name == "cvat" else list(CLASSES)  # CVAT's has an unused id
    assert [c["name"] for c in split.index.categories] == classes
    boxes, expected = _boxes_by_file(split), _expected()
    assert boxes.keys() == expected.keys()  # the background image is kept in every format
    for stem in expected:
        assert [b[0] for b in boxes[stem]] == [b[0] for b in expected[stem]], stem
        np.testing.assert_allclose(np.reshape([b[1:] for b in boxes[stem]], (-1, 4)),
                                   np.reshape([b[1:] for b in expected[stem]], (-1, 4)), atol=1.0,
                                   err_msg=f"{name} {stem}")
    reference = _pixels(packed["roboflow"])
    for stem, pixels in _pixels(split).items():
        assert np.array_equal(pixels, reference[stem]), (name, stem)
    assert split.summary["background_images"] == 1


def test_category_ids_from_zero_with_gaps_and_unused_ones(all_formats):
    _, packed = all_formats
    cvat = packed["cvat"]
    # ids 9, 0, 7, 5 in the file; 7 (fish) has no annotation: labels follow ascending ids
    assert [(c["id"], c["name"]) for c in cvat.index.categories] == [(0, "bird"), (5, "cat"), (7, "fish"), (9, "dog")]
    labels = {name: label for label, name in enumerate(["bird", "cat", "fish", "dog"], start=1)}
    index = cvat.index
    first = index.file_names.to_pylist().index("batch1/0001.jpg")
    assert sorted(index.boxes_of(first)[1].tolist()) == sorted([labels["cat"], labels["dog"]])
    gt = index.coco_ground_truth()
    assert {a["category_id"] for a in gt["annotations"]} == {0, 5, 9}
    assert all(a["area"] > 0 for a in gt["annotations"])  # area 0 or missing: w * h


def test_unused_category_is_a_class_and_reported_the_parent_is_not(tmp_path, capsys):
    json_path = write_coco_export(tmp_path / "cvat", roboflow=False)
    assert main(["prepare", "coco", "--annotations", str(json_path), "--split", "train", str(tmp_path / "out"),
                 "--workers", "1"]) == 0
    summary = PackedSplit(tmp_path / "out" / "train").summary
    assert [c["name"] for c in summary["classes"]] == ["bird", "cat", "fish", "dog"]
    assert summary["unused_categories"] == ["fish"] and summary["not_classes"] == []
    out = capsys.readouterr().out
    assert "no boxes of: fish" in out and "1 background" in out

    roboflow = write_coco_export(tmp_path / "rf")
    assert main(["prepare", "coco", "--annotations", str(roboflow), "--split", "train", str(tmp_path / "out2"),
                 "--workers", "1"]) == 0
    summary = PackedSplit(tmp_path / "out2" / "train").summary
    assert [n["name"] for n in summary["not_classes"]] == ["animals"]
    assert "not a class: animals (id 0)" in capsys.readouterr().out


def test_per_class_counts_in_summary_and_on_the_terminal(all_formats, tmp_path, capsys):
    root, packed = all_formats
    counts = {c["name"]: (c["images"], c["boxes"]) for c in packed["voc"].summary["classes"]}
    assert counts == {"bird": (2, 2), "cat": (2, 2), "dog": (2, 2)}
    assert main(["prepare", "yolo", str(root / "yolo" / "data.yaml"), str(tmp_path), "--workers", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("train: 4 images (1 background), 6 boxes, 0 skipped")
    assert [line.split() for line in lines[1:5]] == [["class", "images", "boxes"], ["bird", "2", "2"],
                                                     ["cat", "2", "2"], ["dog", "2", "2"]]


def test_coco_export_subfolders_and_a_flattened_file_name(tmp_path):
    json_path = write_coco_export(tmp_path / "cvat", roboflow=False)
    data = json.loads(json_path.read_text())
    data["images"][0]["file_name"] = "C:/labelling/project/0001.jpg"  # the tool's path, not the export's
    (tmp_path / "cvat" / "images" / "batch1" / "0001.jpg").rename(tmp_path / "cvat" / "images" / "0001.jpg")
    json_path.write_text(json.dumps(data))
    summary = prepare_coco_export(json_path, tmp_path / "out", split="valid")["valid"]
    assert summary["images"] == 4 and summary["skipped"] == []
    assert summary["source"]["images"] == str(tmp_path / "cvat" / "images")


def test_background_flag(tmp_path):
    json_path = write_coco_export(tmp_path / "rf")
    kept = prepare_coco_export(json_path, tmp_path / "a", split="train")["train"]
    dropped = prepare_coco_export(json_path, tmp_path / "b", split="train", keep_background=False)["train"]
    assert (kept["images"], kept["background_images"]) == (4, 1)
    assert (dropped["images"], dropped["background_images"], dropped["dropped_images"]["no_boxes"]) == (3, 0, 1)


def test_voc_one_based_corners_difficult_flags_and_ground_truth(tmp_path):
    year = write_voc(tmp_path / "VOC2007", splits={"trainval": ["0001", "0003"], "test": ["0002"]},
                     difficult=(("0003", 1),))
    summaries = prepare_voc(tmp_path, tmp_path / "out")  # a VOCdevkit-like root holding VOC2007
    assert sorted(summaries) == ["test", "trainval"]
    split = PackedSplit(tmp_path / "out" / "trainval")
    boxes = _boxes_by_file(split)
    assert boxes["0001"] == [("cat", 2.0, 3.0, 20.0, 25.0), ("dog", 30.0, 10.0, 47.0, 39.0)]  # xmin 3 -> x 2
    assert len(boxes["0003"]) == 3  # the difficult box is a training box too (SSD's use_difficult_gt)
    gt = split.index.coco_ground_truth()
    hard = [a for a in gt["annotations"] if a.get("difficult")]
    assert len(hard) == 1 and hard[0]["iscrowd"] == 1 and hard[0]["bbox"] == [20.0, 2.0, 30.0, 28.0]
    assert {c["name"]: c.get("difficult") for c in split.summary["classes"]} == {"bird": 0, "cat": 1, "dog": 0}
    assert [c["name"] for c in PackedSplit(tmp_path / "out" / "test").index.categories] == list(CLASSES)
    assert year.name == "VOC2007"


def test_voc_class_order_rules_and_faults(tmp_path):
    year = write_voc(tmp_path / "VOC2012")
    (year / "Annotations" / "0002.xml").write_text("<annotation><object><name>bird")  # not XML
    (year / "Annotations" / "0004.xml").unlink()
    xml = (year / "Annotations" / "0001.xml").read_text()
    bad = xml.replace("</annotation>", voc_object("zebra", 1, 1, 5, 5) + "<object><name>cat</name></object>"
                      + "</annotation>")
    (year / "Annotations" / "0001.xml").write_text(bad)
    summary = prepare_voc(year, tmp_path / "sorted")["train"]
    assert [c["name"] for c in summary["classes"]] == ["bird", "cat", "dog", "zebra"]  # not all VOC's: sorted
    assert {s["file"]: s["reason"][:13] for s in summary["skipped"]} == {
        "JPEGImages/0002.jpg": "annotation fi", "JPEGImages/0004.jpg": "no annotation"}
    assert summary["dropped_boxes"]["invalid"] == 1
    fixed = prepare_voc(year, tmp_path / "fixed", classes=["dog", "cat"])["train"]
    assert [c["name"] for c in fixed["classes"]] == ["dog", "cat"]
    assert fixed["dropped_boxes"]["unknown_category"] == 2  # bird and zebra
    (year / "Annotations" / "0001.xml").write_text(xml)
    (year / "Annotations" / "0003.xml").write_text(
        (year / "Annotations" / "0003.xml").read_text().replace("bird", "person"))
    ordered = prepare_voc(year, tmp_path / "voc-order")["train"]
    assert [c["name"] for c in ordered["classes"]] == ["cat", "dog", "person"]  # VOC's order, not sorted
    assert VOC_CLASSES.index("dog") < VOC_CLASSES.index("person")


def test_voc_devkit_with_two_years_is_their_union(tmp_path):
    write_voc(tmp_path / "VOCdevkit" / "VOC2007", splits={"trainval": ["0001", "0002"], "test": ["0003"]})
    write_voc(tmp_path / "VOCdevkit" / "VOC2012", splits={"trainval": ["0003", "0004"]})
    summaries = prepare_voc(tmp_path / "VOCdevkit", tmp_path / "out")
    assert summaries["trainval"]["images"] == 4 and summaries["test"]["images"] == 1
    names = PackedSplit(tmp_path / "out" / "trainval").index.file_names.to_pylist()
    assert names == ["VOC2007/JPEGImages/0001.jpg", "VOC2007/JPEGImages/0002.jpg",
                     "VOC2012/JPEGImages/0003.jpg", "VOC2012/JPEGImages/0004.jpg"]
    ids = PackedSplit(tmp_path / "out" / "trainval").index.image_ids.tolist()
    assert len(set(ids)) == 4  # the same stem in two years: ids numbered instead


def test_yolo_names_dict_path_relative_to_the_yaml_and_label_faults(tmp_path):
    data_yaml = write_yolo(tmp_path / "datasets" / "zoo", names_as_dict=True, yaml_dir=tmp_path / "configs")
    labels = tmp_path / "datasets" / "zoo" / "labels" / "train"
    (labels / "0002.txt").write_text("")  # empty: background
    (labels / "0003.txt").write_text(
        "1 0.625 0.444444 0.535714 0.777778\n"  # cat, as written
        "7 0.5 0.5 0.2 0.2\n"  # class 7: not in names
        "0 0.5 0.5\n"  # too short
        "x 0.1 0.1 0.1 0.1\n"  # not a number
        "2 0.1 0.2 0.3 0.2 0.3 0.5 0.1 0.5\n"  # a polygon: its box
        "0 nan 0.5 0.1 0.1\n")  # not finite
    summary = prepare_yolo(data_yaml, tmp_path / "out")["train"]
    assert summary["background_images"] == 2 and summary["images"] == 4
    assert summary["dropped_boxes"]["unknown_category"] == 1 and summary["dropped_boxes"]["invalid"] == 2
    assert summary["dropped_boxes"]["not_finite"] == 1
    boxes = _boxes_by_file(PackedSplit(tmp_path / "out" / "train"))
    assert boxes["0002"] == []
    assert boxes["0003"] == [("cat", 20.0, 2.0, 50.0, 30.0), ("dog", 6.0, 7.0, 17.0, 18.0)]  # 56x36 image
    (labels / "0001.txt").write_bytes(b"\xff\xfe\x00binary")
    summary = prepare_yolo(data_yaml, tmp_path / "out", overwrite=True)["train"]
    assert [s["file"] for s in summary["skipped"]] == ["images/train/0001.jpg"]


def test_yolo_yaml_errors_name_the_key(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("train: images/train\nnames: 3\n")
    with pytest.raises(ValueError, match="names"):
        prepare_yolo(path, tmp_path / "out")
    path.write_text("train: images/train\nnc: 2\nnames: [a]\n")
    with pytest.raises(ValueError, match="nc is 2"):
        prepare_yolo(path, tmp_path / "out")
    path.write_text("train: nowhere\nnames: [a]\n")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare_yolo(path, tmp_path / "out")


# --- EXIF orientation ---

def _viewed(seed: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A 48x32 image as a viewer shows it, with a white box at known pixels."""
    image = noise_image(seed, size=(48, 32))
    box = (6, 4, 20, 14)
    image.paste((255, 255, 255), box)
    return image, box


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_everywhere_images_are_read(tmp_path, orientation):
    viewed, (x1, y1, x2, y2) = _viewed(orientation)
    root = tmp_path / "coco"
    (root / "train2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    data = oriented_jpeg(viewed, orientation)
    (root / "train2017" / "phone.jpg").write_bytes(data)
    (root / "train2017" / "sideways.jpg").write_bytes(data)
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0}
    stored_w, stored_h = Image.open(io.BytesIO(data)).size
    json_data = {"images": [{"id": 1, "file_name": "phone.jpg", "width": 48, "height": 32},
                            {"id": 2, "file_name": "sideways.jpg", "width": stored_w, "height": stored_h}],
                 "annotations": [ann, {**ann, "id": 2, "image_id": 2}], "categories": [{"id": 1, "name": "box"}]}
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(json_data))

    expected = np.asarray(viewed, dtype=np.int16)
    # the same JPEG decoder's pixels, turned by PIL's own EXIF transpose: what ours must equal
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    summary = prepare_coco_export(root / "annotations" / "instances_train2017.json", tmp_path / "out",
                                  split="train", images=root / "train2017")["train"]
    oriented = [{"file": "phone.jpg", "orientation": orientation}]
    if orientation == 3:  # upside down: the same size either way, so both images are kept
        assert summary["exif_oriented"] == [*oriented, {"file": "sideways.jpg", "orientation": 3}]
    else:  # a quarter turn: annotations of the stored size do not fit the image as shown
        assert summary["exif_oriented"] == oriented
        assert summary["skipped"][0]["file"] == "sideways.jpg"
        assert "EXIF orientation" in summary["skipped"][0]["reason"]
    packed = PackedSplit(tmp_path / "out" / "train")
    assert (int(packed.index.heights[0]), int(packed.index.widths[0])) == (32, 48)
    assert packed.index.boxes_xyxy[0].tolist() == [x1, y1, x2, y2]
    cfg = config_from_dict({"classes": None, "num_classes": None, "image_size": [32, 32]})
    for source in (tmp_path / "out" / "train", root):  # packed, and the raw folder read in place
        dataset = load_dataset(source, cfg, train=False, split="train2017" if source == root else "train")
        pixels = decode(dataset.images.read(0)).image.permute(1, 2, 0).numpy().astype(np.int16)
        assert np.array_equal(pixels, reference) and np.abs(pixels - expected).mean() < 10
        assert pixels[y1 + 1:y2 - 1, x1 + 1:x2 - 1].min() > 200  # the white box is where the labels say
        crop = decode(dataset.images.read(0), crop=CropRect(x1 + 1, y1 + 1, x2 - 1, y2 - 1)).image
        assert crop.shape[1:] == (y2 - y1 - 2, x2 - x1 - 2) and int(crop.min()) > 200
    predicted = load_image(root / "train2017" / "phone.jpg").astype(np.int16)  # predict's reader
    assert np.array_equal(predicted, reference)


def test_reencoded_oriented_image_is_stored_upright(tmp_path):
    viewed, box = _viewed(1)
    gray = viewed.convert("L")
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    gray.transpose(Image.Transpose.ROTATE_90).save(buffer, format="JPEG", quality=95, exif=exif)
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "g.jpg").write_bytes(buffer.getvalue())
    (folder / "plain.png").write_bytes(encode(noise_image(3), "PNG"))
    json_path = tmp_path / "ann.json"
    json_path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "g.jpg"}, {"id": 2, "file_name": "plain.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [6, 4, 14, 10]}],
        "categories": [{"id": 3, "name": "box"}]}))
    summary = prepare_coco_export(json_path, tmp_path / "out", split="s", images=folder)["s"]
    assert summary["converted_to_rgb"] == [{"file": "g.jpg", "from_mode": "L"}]
    split = PackedSplit(tmp_path / "out" / "s")
    with Image.open(io.BytesIO(split.read(0))) as stored:
        assert stored.size == (48, 32) and stored.getexif().get(0x0112) is None
    assert split.summary["background_images"] == 1


def test_the_same_scene_reads_the_same_in_every_image_reader(tmp_path):
    image = scene_image("0003")
    path = tmp_path / "x.jpg"
    image.save(path, quality=95)
    decoded = decode(path.read_bytes()).image.permute(1, 2, 0).numpy()
    assert np.array_equal(load_image(path), decoded)


def test_dropped_boxes_are_named_by_file_and_line(tmp_path, capsys):
    """Counting is not enough: the terminal and summary.json say which line of which file."""
    data_yaml = write_yolo(tmp_path / "zoo")
    labels = tmp_path / "zoo" / "labels" / "train"
    (labels / "0003.txt").write_text("1 0.625 0.444444 0.535714 0.777778\n\n7 0.5 0.5 0.2 0.2\n0 0.5 0.5\n"
                                     "0 nan 0.5 0.1 0.1\n")
    assert main(["prepare", "yolo", str(data_yaml), str(tmp_path / "out"), "--workers", "1"]) == 0
    listed = json.loads((tmp_path / "out" / "train" / "summary.json").read_text())["dropped_box_list"]
    assert [(item["file"], item["at"]) for item in listed] == [(str(labels / "0003.txt"), f"line {n}")
                                                               for n in (3, 4, 5)]
    assert "class 7 is not in data.yaml's names" in listed[0]["reason"]
    assert "not four finite numbers" in listed[2]["reason"] and listed[2]["image"] == "images/train/0003.jpg"
    out = capsys.readouterr().out
    assert f"dropped box: {labels / '0003.txt'}, line 4: not 'class cx cy w h' or a polygon: '0 0.5 0.5'" in out


def test_dropped_coco_and_voc_boxes_name_the_annotation(tmp_path):
    root = tmp_path / "coco"
    make_faulty_coco(root)
    summary = prepare_coco(root, tmp_path / "out", splits=["train2017"])["train2017"]
    json_path = str(root / "annotations" / "instances_train2017.json")
    listed = summary["dropped_box_list"]
    counted = sum(v for k, v in summary["dropped_boxes"].items())
    assert len(listed) == counted and all(item["file"] == json_path for item in listed)
    assert all(item["at"].startswith("annotation") and item["reason"] for item in listed)
    year = write_voc(tmp_path / "VOC2007")
    xml = year / "Annotations" / "0003.xml"
    xml.write_text(xml.read_text().replace("<xmin>", "<xmin>x", 1))
    summary = prepare_voc(year, tmp_path / "voc", splits=["train"])["train"]
    assert {(item["file"], item["at"], item["reason"]) for item in summary["dropped_box_list"]} == {
        (str(xml), "object 1", "bndbox is not four numbers")}


def test_prepare_yolo_on_empty_image_folders_fails_naming_them(tmp_path, capsys):
    data_yaml = write_yolo(tmp_path / "zoo")
    for image in (tmp_path / "zoo" / "images" / "train").iterdir():
        image.unlink()
    assert main(["prepare", "yolo", str(data_yaml), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    folder = tmp_path / "zoo" / "images" / "train"
    assert f"split 'train' has no images: nothing with an image suffix in {folder}" in err
    assert not (tmp_path / "out" / "train").exists()
