"""`ssdzoo prepare coco`: fault handling, round trip, crash safety, COCO ground truth."""

from __future__ import annotations

import copy
import io
import json
import os

import numpy as np
import pytest
from data_helpers import LABEL_OF, make_faulty_coco
from PIL import Image

from ssdzoo.cli import main
from ssdzoo.config import load_config
from ssdzoo.data import PackedFormatError, PackedSplit, load_dataset, prepare_coco, verify_packed
from ssdzoo.data.packed import ShardWriter
from ssdzoo.data.synthetic import SynthSpec, make_synthetic_coco


def _cfg(num_classes: int = 4):
    names = ["background", "person", "car", "train"][:num_classes]
    return load_config("demo", [f"classes={json.dumps(names)}", f"num_classes={num_classes}",
                                "image_size=[32,32]", "feature_size=[4,2,1,1]"])


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """The fault-filled COCO root, prepared once with 2 worker processes through the CLI."""
    root = tmp_path_factory.mktemp("faulty")
    expected = make_faulty_coco(root / "coco")
    assert main(["prepare", "coco", str(root / "coco"), str(root / "packed"), "--workers", "2",
                 "--shard-size", "4"]) == 0
    return root, expected


def _kept(split: PackedSplit) -> dict[str, list[tuple]]:
    index = split.index
    kept = {}
    for i, name in enumerate(index.file_names.to_pylist()):
        boxes, labels = index.boxes_of(i)
        kept[name] = [(int(lab), *map(float, box)) for box, lab in zip(boxes.tolist(), labels.tolist())]
    return kept


@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_prepare_keeps_exactly_the_valid_images_and_boxes(faulty, split):
    root, expected = faulty
    packed = PackedSplit(root / "packed" / split)
    assert _kept(packed) == {k: [tuple(map(float, b)) for b in v] for k, v in expected["keep"][split].items()}
    summary = packed.summary
    assert summary["images"] == len(expected["keep"][split])
    assert summary["boxes"] == sum(map(len, expected["keep"][split].values()))
    skipped = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert skipped.keys() == expected["skipped"][split].keys()
    for name, word in expected["skipped"][split].items():
        assert word in skipped[name], (name, skipped[name])
    assert summary["dropped_images"] == expected["dropped_images"][split]


def test_prepare_counts_dropped_boxes_and_conversions(faulty):
    root, expected = faulty
    summary = PackedSplit(root / "packed" / "train2017").summary
    assert {k: v for k, v in summary["dropped_boxes"].items() if v} == expected["dropped_boxes"]
    assert {c["file"]: c["from_mode"] for c in summary["converted_to_rgb"]} == expected["converted"]
    assert summary["shards"] == 2  # 6 images, 4 per shard


def test_round_trip_bytes_and_boxes(faulty):
    root, expected = faulty
    packed = PackedSplit(root / "packed" / "train2017")
    for i, name in enumerate(packed.index.file_names.to_pylist()):
        data = packed.read(i)
        source = (root / "coco" / "train2017" / name).read_bytes()
        if name in expected["converted"]:
            with Image.open(io.BytesIO(data)) as stored, Image.open(io.BytesIO(source)) as original:
                assert stored.mode == "RGB" and stored.size == original.size
        else:
            assert data == source, name
    assert packed.index.labels.dtype == np.int64 and packed.index.boxes_xyxy.dtype == np.float32
    assert verify_packed(root / "packed" / "train2017") == []


def test_output_does_not_depend_on_workers(faulty, tmp_path):
    root, _ = faulty
    prepare_coco(root / "coco", tmp_path, workers=1, shard_size=4)
    for split in ("train2017", "val2017"):
        one, two = PackedSplit(tmp_path / split), PackedSplit(root / "packed" / split)
        assert [s["sha256"] for s in one.manifest["shards"]] == [s["sha256"] for s in two.manifest["shards"]]
        assert one.manifest["tables"] == two.manifest["tables"]


@pytest.mark.parametrize("source", ["packed", "coco"])
def test_load_dataset_reads_every_kept_item(faulty, source):
    root, expected = faulty
    cfg = _cfg()
    for train, split in ((True, "train2017"), (False, "val2017")):
        dataset = load_dataset(root / source, cfg, train)
        assert sorted(dataset.index.file_names.to_pylist()) == sorted(expected["keep"][split])
        assert {s["file"] for s in dataset.skipped} == set(expected["skipped"][split])
        for i in range(len(dataset)):
            sample = dataset[i]
            assert sample.image.shape == (3, 32, 32)
            assert len(sample.labels) >= 1 and ((sample.boxes_xyxy >= 0) & (sample.boxes_xyxy <= 1)).all()
        assert [c["id"] for c in dataset.categories] == sorted(LABEL_OF)


def test_raw_and_packed_eval_items_agree(faulty):
    root, _ = faulty
    cfg = _cfg()
    packed, raw = load_dataset(root / "packed", cfg, False), load_dataset(root / "coco", cfg, False)
    assert packed.coco_ground_truth() == raw.coco_ground_truth()
    for a, b in zip(packed, raw):
        assert a.image_id == b.image_id and (a.image == b.image).all()
        assert (a.boxes_xyxy == b.boxes_xyxy).all() and (a.labels == b.labels).all()


def test_category_count_must_match_config(faulty):
    root, _ = faulty
    with pytest.raises(ValueError, match="3 categories but the config has num_classes 3"):
        load_dataset(root / "packed", _cfg(num_classes=3), True)


def test_missing_annotation_file_is_an_error_naming_it(tmp_path, capsys):
    (tmp_path / "annotations").mkdir()
    with pytest.raises(FileNotFoundError, match="instances_val2017.json"):
        prepare_coco(tmp_path, tmp_path / "out", splits=["val2017"])
    assert main(["prepare", "coco", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "instances_train2017.json" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        load_dataset(tmp_path, _cfg(), True)
    assert main(["prepare", "coco", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"ssdzoo prepare: error: COCO folder not found: {tmp_path / 'nowhere'}"


def test_interrupted_prepare_leaves_no_dataset_and_keeps_the_old_one(faulty, tmp_path, monkeypatch):
    root, _ = faulty
    prepare_coco(root / "coco", tmp_path, splits=["train2017"], shard_size=4)
    before = PackedSplit(tmp_path / "train2017").manifest
    original_add, calls = ShardWriter.add, []

    def failing_add(self, image_id, data):
        calls.append(image_id)
        if len(calls) == 5:  # after one complete shard
            raise KeyboardInterrupt
        return original_add(self, image_id, data)

    monkeypatch.setattr(ShardWriter, "add", failing_add)
    with pytest.raises(KeyboardInterrupt):
        prepare_coco(root / "coco", tmp_path, splits=["train2017"], shard_size=4, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train2017"]  # no staging folder left
    assert PackedSplit(tmp_path / "train2017").manifest == before


def test_partial_or_damaged_folders_do_not_read_as_valid(faulty, tmp_path):
    root, _ = faulty
    prepare_coco(root / "coco", tmp_path, splits=["train2017"], shard_size=4)
    split = tmp_path / "train2017"
    os.replace(split / "manifest.json", tmp_path / "saved-manifest")  # as if killed before the end
    with pytest.raises(PackedFormatError, match="no manifest.json"):
        PackedSplit(split)
    with pytest.raises(FileNotFoundError, match="no dataset for split train2017"):
        load_dataset(tmp_path, _cfg(), True)
    os.replace(tmp_path / "saved-manifest", split / "manifest.json")

    shard = split / "images-00001.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify_packed(split)  # the shard, then each of its images that no longer decodes
    assert problems[0] == f"{shard}: checksum mismatch"
    assert all(p.startswith(f"{shard}: image ") and "does not decode" in p for p in problems[1:])
    shard.write_bytes(bytes(data[:-10]))
    with pytest.raises(PackedFormatError, match="images-00001.arrow: .* bytes, the manifest says .* .truncated"):
        PackedSplit(split)


def test_existing_output_needs_overwrite(faulty, tmp_path):
    root, _ = faulty
    prepare_coco(root / "coco", tmp_path, splits=["val2017"])
    with pytest.raises(ValueError, match="--overwrite"):
        prepare_coco(root / "coco", tmp_path, splits=["val2017"])


def _stats(gt: dict, detections: list[dict], image_ids: list[int]) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    coco_gt = COCO(copy.deepcopy(gt))
    evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(copy.deepcopy(detections)), "bbox",
                                print_function=lambda *a: None)
    evaluator.params.imgIds = image_ids
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats)


def test_coco_ground_truth_gives_the_original_json_numbers(tmp_path):
    make_synthetic_coco(tmp_path / "coco", seed=3, num_train=0, num_val=24,
                        spec=SynthSpec(min_side=64, max_side=96, min_object=8))
    path = tmp_path / "coco" / "annotations" / "instances_val2017.json"
    original = json.loads(path.read_text())
    anns = original["annotations"]
    first, second, third = (img["id"] for img in original["images"][:3])
    anns.append({"id": 9001, "image_id": first, "category_id": 1, "bbox": [2, 2, 9, 9], "area": 81.0,
                 "iscrowd": 1})  # val: the image is dropped
    anns.append({"id": 9002, "image_id": second, "category_id": 2, "bbox": [3, 3, 0.3, 9], "area": 2.7,
                 "iscrowd": 0})  # too thin to train on, but COCOeval counts it
    anns.append({"id": 9003, "image_id": third, "category_id": 3, "bbox": [60, 50, 80, 80], "area": 6400.0,
                 "iscrowd": 0})  # out of the image: clipped for training, counted as is
    path.write_text(json.dumps(original))
    prepare_coco(tmp_path / "coco", tmp_path / "packed")
    cfg = load_config("demo", ["image_size=[32,32]", "feature_size=[4,2,1,1]"])
    dataset = load_dataset(tmp_path / "packed", cfg, False)
    gt = dataset.coco_ground_truth()
    kept = [img["id"] for img in gt["images"]]
    assert first not in kept and second in kept and third in kept
    assert len(kept) == 23 and {a["id"] for a in gt["annotations"]} >= {9002, 9003}

    rng = np.random.default_rng(0)
    detections = []
    for a in anns:
        if a["image_id"] in kept and rng.uniform() < 0.8:
            x, y, w, h = a["bbox"]
            jitter = rng.normal(0, 0.1 * max(w, h), 2)
            detections.append({"image_id": a["image_id"], "category_id": int(rng.choice([1, 2, 3], p=[.1, .1, .8])
                                                                              if rng.uniform() < .2 else a["category_id"]),
                               "bbox": [x + jitter[0], y + jitter[1], w, h], "score": float(rng.uniform())})
    ours = _stats(gt, detections, kept)
    reference = _stats(original, detections, kept)
    assert ours[0] > 0.1
    np.testing.assert_array_equal(ours, reference)
