"""Malformed annotations never crash or hang a reader: a clear error naming the file and key, or
a counted drop / a listed skip. COCO json with wrong types, missing keys, NaN and numbers no
int64 holds; YOLO lines with extra columns, negative, NaN or infinite values; VOC xml that does
not parse or that expands entities (a billion-laughs file is skipped quickly)."""

from __future__ import annotations

import copy
import json
import time

import pytest
from data_helpers import encode, noise_image, write_voc, write_yolo

from ssdzoo.data import prepare_coco_export, prepare_voc, prepare_yolo

BASE = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 32}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "area": 100,
                         "iscrowd": 0}],
        "categories": [{"id": 1, "name": "cat"}]}

# a fault in one annotation: that box is dropped and counted (the image stays if it has others)
DROPPED = {
    "bbox as a string": ({"bbox": "1,2,3,4"}, "invalid"), "bbox of 3": ({"bbox": [1, 2, 3]}, "invalid"),
    "bbox with a string": ({"bbox": ["1", 2, 3, 4]}, "invalid"), "bbox null": ({"bbox": None}, "invalid"),
    "bbox with a bool": ({"bbox": [True, 2, 3, 4]}, "invalid"), "bbox beyond int64": ({"bbox": [2**70, 1, 2, 3]}, "invalid"),
    "bbox NaN": ({"bbox": [float("nan"), 2, 3, 4]}, "not_finite"), "iscrowd a word": ({"iscrowd": "no"}, "invalid"),
    "no category": ({"category_id": None}, "unknown_category"), "category as a string": ({"category_id": "1"}, "unknown_category"),
    "no image": ({"image_id": None}, "unknown_image"), "image id beyond int64": ({"image_id": 2**70}, "unknown_image"),
}
# values that do not matter for training: the box is kept
KEPT = {"area NaN": {"area": float("nan")}, "area a string": {"area": "x"}, "area beyond float64": {"area": 2**1030},
        "id beyond int64": {"id": 2**70}, "id a float": {"id": 1.5}}
# structure the reader cannot do without: an error naming the file and the key
ERRORS = {
    "no images": (lambda d: d.pop("images"), "key 'images' must be a list"),
    "annotations a dict": (lambda d: d.update(annotations={}), "key 'annotations' must be a list"),
    "image id a string": (lambda d: d["images"][0].update(id="1"), r"images\[0\] needs an integer 'id'"),
    "image id beyond int64": (lambda d: d["images"][0].update(id=2**70), r"images\[0\] needs an integer 'id'"),
    "no file_name": (lambda d: d["images"][0].pop("file_name"), r"images\[0\] needs an integer 'id' and a 'file_name'"),
    "category id a float": (lambda d: d["categories"][0].update(id=1.5), r"categories\[0\] needs an integer 'id'"),
    "category id beyond int64": (lambda d: d["categories"][0].update(id=2**70), r"categories\[0\] needs an integer"),
    "category without a name": (lambda d: d["categories"][0].pop("name"), r"categories\[0\] needs .* a string 'name'"),
}


def _export(tmp_path, change) -> tuple:
    (tmp_path / "a.jpg").write_bytes(encode(noise_image(0)))
    data = copy.deepcopy(BASE)
    change(data)
    path = tmp_path / "_annotations.coco.json"
    path.write_text(json.dumps(data))
    return path, tmp_path / "out"


@pytest.mark.parametrize("fault", DROPPED)
def test_coco_faulty_annotation_is_dropped_and_counted(tmp_path, fault):
    change, counter = DROPPED[fault]
    path, out = _export(tmp_path, lambda d: d["annotations"][0].update(change))
    summary = prepare_coco_export(path, out, split="train", progress=False)["train"]
    assert summary["dropped_boxes"][counter] == 1 and summary["boxes"] == 0, summary


@pytest.mark.parametrize("fault", KEPT)
def test_coco_values_training_does_not_use_are_taken_as_they_come(tmp_path, fault):
    path, out = _export(tmp_path, lambda d: d["annotations"][0].update(KEPT[fault]))
    summary = prepare_coco_export(path, out, split="train", progress=False)["train"]
    assert summary["boxes"] == 1 and summary["images"] == 1, summary


@pytest.mark.parametrize("fault", ERRORS)
def test_coco_broken_structure_is_an_error_naming_file_and_key(tmp_path, fault):
    change, message = ERRORS[fault]
    path, out = _export(tmp_path, change)
    with pytest.raises(ValueError, match=f"{path}: {message}"):
        prepare_coco_export(path, out, split="train", progress=False)


def test_coco_file_that_is_not_json_is_an_error_naming_it(tmp_path):
    path, out = _export(tmp_path, lambda d: None)
    path.write_text('{"images": [')
    with pytest.raises(ValueError, match=f"{path}: not valid JSON"):
        prepare_coco_export(path, out, split="train", progress=False)


def test_yolo_malformed_lines_are_dropped_and_counted(tmp_path):
    data_yaml = write_yolo(tmp_path / "zoo")
    labels = sorted((tmp_path / "zoo" / "labels" / "train").glob("*.txt"))
    labels[0].write_text(
        "0 0.5 0.5 0.2 0.2 0.9\n"  # an extra column (a confidence): not a box, not a polygon
        "0 0.5 0.5 0.2\n"  # a column short
        "-1 0.5 0.5 0.2 0.2\n"  # a negative class
        "1e300 0.5 0.5 0.2 0.2\n"  # a class no int64 holds
        "0 -0.5 -0.5 0.2 0.2\n"  # wholly outside the image
        "0 0.5 0.5 -0.2 -0.2\n"  # negative size
        "0 nan 0.5 0.2 0.2\n0 inf 0.5 0.2 0.2\n0 1e999 0.5 0.2 0.2\n"  # not finite
        "0 0.5 0.5 0.2 0.2\n")  # the one good box
    summary = prepare_yolo(data_yaml, tmp_path / "out", progress=False)["train"]
    dropped = summary["dropped_boxes"]
    assert dropped["invalid"] == 2 and dropped["unknown_category"] == 2, dropped
    assert dropped["not_finite"] == 3 and dropped["too_small"] == 2, dropped
    images = list((tmp_path / "zoo" / "images" / "train").iterdir())
    assert summary["images"] == len(images) and not summary["skipped"]


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
""" + "".join(f' <!ENTITY lol{k} "{("&lol" + (str(k - 1) if k > 1 else "") + ";") * 10}">\n' for k in range(1, 10)) + """]>
<annotation><filename>&lol9;</filename></annotation>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY secret SYSTEM "file:///etc/hostname">]>
<annotation><filename>&secret;</filename></annotation>
"""


@pytest.mark.parametrize("content, reason", [
    (BILLION_LAUGHS, "annotation file not readable"), (EXTERNAL, "annotation file not readable"),
    ("<annotation><object>", "annotation file not readable"), (b"\xff\xfe\x00<a>", "annotation file not readable"),
])
def test_voc_xml_that_does_not_parse_or_expands_entities_is_skipped_quickly(tmp_path, content, reason):
    year = write_voc(tmp_path / "VOC2007")
    xml = sorted((year / "Annotations").glob("*.xml"))[0]
    xml.write_bytes(content.encode() if isinstance(content, str) else content)
    start = time.monotonic()
    summary = prepare_voc(year, tmp_path / "out", progress=False)
    seconds = time.monotonic() - start
    skipped = [s for split in summary.values() for s in split["skipped"]]
    assert skipped and all(s["file"].endswith(xml.stem + ".jpg") or xml.stem in s["file"] for s in skipped), skipped
    assert all(reason in s["reason"] for s in skipped), skipped
    assert seconds < 10


def test_voc_bad_numbers_drop_the_box(tmp_path):
    year = write_voc(tmp_path / "VOC2007")
    xml = sorted((year / "Annotations").glob("*.xml"))[0]
    text = xml.read_text()
    first = text.index("<xmin>")
    xml.write_text(text[:first] + "<xmin>nan</xmin><!--" + text[first:].replace("</ymax>", "</ymax>-->", 1))
    summary = prepare_voc(year, tmp_path / "out", progress=False)
    assert sum(s["dropped_boxes"].get("not_finite", 0) + s["dropped_boxes"].get("invalid", 0)
               for s in summary.values()) >= 1
