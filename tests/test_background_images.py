"""Background images (no boxes) train like any image: a COCO export with 40% unannotated images
and a YOLO set with empty label files pack whole and train with nothing skipped; the loss of an
image without boxes is finite and its box term is zero."""

from __future__ import annotations

import json
import logging
import math

import torch
from test_property_data import KINDS, _viewed_size, encode_image
from tiny import TINY_CONFIG, tiny_config

from ssdzoo.cli import main
from ssdzoo.data import PackedSplit, collate, load_dataset, make_synthetic_coco, prepare_coco_export, prepare_yolo
from ssdzoo.data.synthetic import SynthSpec
from ssdzoo.engine.train import TrainStep, build_optimizer
from ssdzoo.model import build_model

SPEC = SynthSpec(min_side=64, max_side=96, min_object=12.0)


def _train(packed, run, caplog, *extra: str) -> None:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(["train", str(TINY_CONFIG), f"data_dir={packed}", f"ckpt_save_dir={run}",
                     "max_unreadable_share=0", "eval_while_train=false", "classes=null", "num_classes=null",
                     *extra]) == 0  # max_unreadable_share 0: a single skipped image would stop it


def test_a_coco_export_with_40_percent_background_images_trains_whole(tmp_path, caplog):
    """15 synthetic images plus one of each image kind (grayscale, CMYK, progressive JPEG, 16-bit,
    palette and RGBA PNG, BMP, TIFF, WebP; EXIF-rotated where the format has EXIF): 25 in all,
    10 of them (40%) without annotations. Every image packs and two epochs train, none skipped."""
    source = tmp_path / "export"
    make_synthetic_coco(source, seed=5, num_train=15, num_val=5, progress=False, spec=SPEC)
    packed = tmp_path / "packed"
    for split in ("train2017", "val2017"):
        path = source / "annotations" / f"instances_{split}.json"
        coco = json.loads(path.read_text())
        if split == "train2017":
            for k, kind in enumerate(KINDS):
                data, suffix = encode_image(kind, 72, 56, 6, seed=k)
                name = f"kind-{kind}{suffix}"
                (source / split / name).write_bytes(data)
                width, height = _viewed_size(kind, 72, 56, 6)
                image_id = 1000 + k
                coco["images"].append({"id": image_id, "file_name": name, "width": width, "height": height})
                coco["annotations"].append({"id": 5000 + k, "image_id": image_id, "category_id": 1 + k % 3,
                                            "bbox": [10.0, 8.0, 30.0, 24.0], "area": 720.0, "iscrowd": 0})
        background = {image["id"] for k, image in enumerate(coco["images"]) if k % 5 in (0, 2)}  # 40%
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] not in background]
        path.write_text(json.dumps(coco))
        summary = prepare_coco_export(path, packed, split=split, images=source / split, progress=False)[split]
        assert summary["images"] == len(coco["images"]) and summary["background_images"] == len(background)
        assert not summary["skipped"]
    assert PackedSplit(packed / "train2017").summary["background_images"] == 10
    _train(packed, tmp_path / "run", caplog, "epoch_size=2", "batch_size=5")
    assert "training test_efficientnet on cpu: 25 images (10 background)" in caplog.text
    assert "cannot be decoded" not in caplog.text and "skipped" not in caplog.text
    assert "epoch 2/2: loss" in caplog.text


def test_a_yolo_set_with_empty_label_files_trains(tmp_path, caplog):
    source = tmp_path / "yolo"
    make_synthetic_coco(source, seed=6, num_train=12, num_val=4, progress=False, spec=SPEC, layout="yolo")
    labels = sorted((source / "labels" / "train").glob("*.txt"))
    for path in labels[::3]:
        path.write_text("")  # a background image, as annotation tools export it
    packed = tmp_path / "packed"
    summary = prepare_yolo(source / "data.yaml", packed, progress=False)
    assert summary["train"]["images"] == 12 and summary["train"]["background_images"] == 4
    _train(packed, tmp_path / "run", caplog, "epoch_size=1", "train_split=train", "val_split=val")
    assert "training test_efficientnet on cpu: 12 images (4 background)" in caplog.text
    assert "cannot be decoded" not in caplog.text and "skipped" not in caplog.text


def test_the_loss_of_a_background_image_is_finite_and_has_no_box_term(tmp_path):
    source = tmp_path / "export"
    make_synthetic_coco(source, seed=7, num_train=4, num_val=1, progress=False, spec=SPEC)
    path = source / "annotations" / "instances_train2017.json"
    coco = json.loads(path.read_text())
    coco["annotations"] = []
    path.write_text(json.dumps(coco))
    prepare_coco_export(path, tmp_path / "packed", split="train2017", images=source / "train2017", progress=False)
    cfg = tiny_config(f"data_dir={tmp_path / 'packed'}")
    dataset = load_dataset(tmp_path / "packed", cfg, train=True)
    batch = collate([dataset[i] for i in range(len(dataset))])  # the training items: crop, flip, colour
    assert batch.images.shape == (4, 3, 64, 64) and not (batch.labels > 0).any()
    torch.manual_seed(0)
    model = build_model(cfg)
    step = TrainStep(model, build_optimizer(model, cfg, torch.device("cpu")), cfg, torch.device("cpu"))
    loss = float(step(batch))
    assert math.isfinite(loss) and loss > 0  # negatives only: the classification term
    loc_grads = [p.grad for p in model.head.loc.parameters()]
    cls_grads = [p.grad for p in model.head.cls.parameters()]
    assert all(g is not None and not g.any() for g in loc_grads)  # no box term: nothing moves the box outputs
    assert any(g is not None and g.any() for g in cls_grads)
