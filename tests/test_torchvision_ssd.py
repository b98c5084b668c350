"""torchvision's SSD300-VGG16 and SSDlite320-MobileNetV3 as ssdzoo models, checked against
torchvision's own code: the same head outputs, default boxes, detections and loss.

torchvision's models are built with seeded random weights (weights=None, weights_backbone=None:
nothing downloads), their state dicts converted by `ssdzoo convert`; conv weights are redrawn
(He-normal) and the class head scaled so that random weights give confident, image-dependent
detections on the repository's public-domain photos, with box offsets of a trained model's size.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large
from torchvision.ops import box_iou
from torchvision.transforms.functional import pil_to_tensor

import ssdzoo
from conftest import GOLDEN_DIR
from ssdzoo.boxes import cxcywh_to_xyxy
from ssdzoo.cli import main

PHOTOS = sorted((GOLDEN_DIR / "tfod" / "photos").iterdir())
BUILDERS = {"ssdlite320_mobilenet_v3_large": ssdlite320_mobilenet_v3_large, "ssd300_vgg16": ssd300_vgg16}


def read_photo(path) -> torch.Tensor:
    return pil_to_tensor(Image.open(path).convert("RGB")).float() / 255  # torchvision's input: RGB in [0, 1]


def torchvision_model(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = BUILDERS[name](weights=None, weights_backbone=None).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    torch.nn.init.normal_(m.bias, std=0.1)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.2)
        images, _ = model.transform([read_photo(PHOTOS[0])])
        outputs = model.head(list(model.backbone(images.tensors).values()))
        # class logits spread 1.5 (confident classes here and there), box offsets 1 (a trained
        # model's size: He-normal weights alone give offsets in the hundreds, boxes a pixel thin)
        for head, key, spread in ((model.head.classification_head, "cls_logits", 1.5),
                                  (model.head.regression_head, "bbox_regression", 1.0)):
            scale = spread / outputs[key].std()
            for module in head.module_list:
                last = module[-1] if isinstance(module, torch.nn.Sequential) else module
                last.weight.mul_(scale)
                last.bias.mul_(scale)
    return model


@pytest.fixture(scope="module", params=list(BUILDERS))
def converted(request, tmp_path_factory):
    """(name, torchvision model, its .pth, the converted .safetensors) for each family."""
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    model = torchvision_model(name, seed=3)
    pth = folder / f"{name}.pth"
    torch.save(model.state_dict(), pth)
    out = folder / "converted.safetensors"
    assert main(["convert", str(pth), "--config", name, "--out", str(out)]) == 0
    return name, model, pth, out


def test_head_outputs_equal_torchvisions_on_its_own_input(converted):
    name, tv, _, out = converted
    cfg = ssdzoo.load_config(out.with_suffix(".yaml"))
    assert cfg.num_classes == 91 and cfg.classes[12] == "N/A_12" and cfg.classes[13] == "stop sign"
    model = ssdzoo.build_model(cfg, weights=out).eval()
    with torch.no_grad():
        images, _ = tv.transform([read_photo(PHOTOS[1])])  # torchvision's resize and normalization
        expected = tv.head(list(tv.backbone(images.tensors).values()))
        loc, logits = model(images.tensors)
    for ours, theirs in ((loc, expected["bbox_regression"]), (logits, expected["cls_logits"])):
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()


def test_default_boxes_equal_torchvisions(converted):
    name, tv, _, _ = converted
    cfg = ssdzoo.load_config(name)
    size = cfg.image_size[0]
    with torch.no_grad():
        images, _ = tv.transform([torch.rand(3, size, size)])
        maps = list(tv.backbone(images.tensors).values())
        anchors_px = tv.anchor_generator(images, maps)[0]  # (A, 4) xyxy pixels
    ours = cxcywh_to_xyxy(ssdzoo.default_boxes(cfg)) * size
    assert len(ours) == len(anchors_px) == cfg.num_ssd_boxes
    assert (ours.float() - anchors_px).abs().max() / size <= 1e-6


def _detections(lines: list[dict], min_score: float) -> list[tuple]:
    return [(d["category_id"], d["bbox"], d["score"]) for d in lines if d["score"] >= min_score]


def test_predict_finds_torchvisions_detections(converted, tmp_path):
    """`ssdzoo predict --checkpoint X.pth` (torchvision's file as it is) on real photos: every
    torchvision detection scoring >= 0.5 is found (IoU >= 0.99, same label, score within 2e-3),
    and nothing more."""
    name, tv, pth, _ = converted
    photos = PHOTOS if name.startswith("ssdlite") else PHOTOS[:2]  # VGG-16 is slow on 2 CPU cores
    assert main(["predict", "--checkpoint", str(pth), *map(str, photos), "--out", str(tmp_path), "--no-draw",
                 "--workers", "0"]) == 0
    lines = {json.loads(line)["file_name"]: json.loads(line)
             for line in (tmp_path / "detections.jsonl").read_text().splitlines()}
    total = 0
    for photo in photos:
        with torch.no_grad():
            expected = tv([read_photo(photo)])[0]
        ours = lines[photo.name]["detections"]
        boxes = torch.tensor([[x, y, x + w, y + h] for _, (x, y, w, h), _ in _detections(ours, 0.0)]).reshape(-1, 4)
        labels = [c for c, _, _ in _detections(ours, 0.0)]
        scores = torch.tensor([s for _, _, s in _detections(ours, 0.0)])
        strong = expected["scores"] >= 0.5
        total += int(strong.sum())
        iou = box_iou(expected["boxes"][strong], boxes) if len(boxes) else torch.zeros(int(strong.sum()), 0)
        # a box under a pixel thin (random weights make some; clipped flat at the edge, or shrunk by
        # exp of a large negative offset) has an IoU that float rounding decides: its corners must agree
        sides = expected["boxes"][strong][:, None, 2:] - expected["boxes"][strong][:, None, :2]
        flat = (sides < 1.0).any(-1)
        corners = (expected["boxes"][strong][:, None] - boxes[None]).abs().amax(-1) <= 0.05
        iou = torch.where(flat & corners, torch.ones_like(iou), iou.nan_to_num(0.0))
        used = set()
        for i, (label, score) in enumerate(zip(expected["labels"][strong].tolist(), expected["scores"][strong])):
            fits = [j for j in range(len(labels)) if j not in used and labels[j] == label and iou[i, j] >= 0.99
                    and abs(scores[j] - score) <= 2e-3]
            assert fits, f"{photo.name}: torchvision's detection {i} (label {label}, score {score:.4f}) not found"
            used.add(fits[0])
        # nothing more: every detection of ours clearly over 0.5 is one of torchvision's
        extra = [j for j in range(len(labels)) if scores[j] >= 0.5 + 2e-3 and j not in used]
        assert not extra, f"{photo.name}: {len(extra)} detections torchvision does not make"
    assert total >= 5, "the random weights made too few confident detections for the check to mean anything"


def test_info_shows_the_paper_box_count_and_torchvisions_parameters(capsys):
    assert main(["info", "ssd300_vgg16"]) == 0
    printed = capsys.readouterr().out
    from torchvision.models.detection import SSD300_VGG16_Weights

    assert "default boxes         8,732" in printed
    assert f"trainable parameters  {SSD300_VGG16_Weights.COCO_V1.meta['num_params']:,}" in printed


def test_multibox_loss_equals_torchvisions_compute_loss():
    """The paper's matching and loss (``matching: paper``, ``loss: multibox``) against
    torchvision's ``SSD.compute_loss`` on the same default boxes, outputs and targets; the
    middle image has no boxes."""
    from ssdzoo.targets import encode

    cfg = ssdzoo.load_config("ssdlite320_mobilenet_v3_large")
    torch.manual_seed(0)
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    # boxes in [0, 1] units on both sides (the offsets do not depend on the unit), so that the
    # IoUs that decide near-ties between anchors are computed from the same numbers
    anchors_xyxy = cxcywh_to_xyxy(anchors_cxcywh).float()
    num_anchors = len(anchors_xyxy)
    loc = torch.randn(3, num_anchors, 4)
    logits = torch.randn(3, num_anchors, cfg.num_classes) * 2
    counts = (4, 0, 7)
    boxes_norm, labels = torch.zeros(3, max(counts), 4), torch.zeros(3, max(counts), dtype=torch.int64)
    targets, matched = [], []
    for i, count in enumerate(counts):
        corner = torch.rand(count, 2) * 0.7
        boxes = torch.cat([corner, corner + 0.05 + torch.rand(count, 2) * 0.3], dim=1).clamp(max=1.0)
        boxes_norm[i, :count], labels[i, :count] = boxes, torch.randint(1, cfg.num_classes, (count,))
        targets.append({"boxes": boxes, "labels": labels[i, :count]})
        if count:
            matched.append(tv.proposal_matcher(box_iou(boxes, anchors_xyxy)))
        else:  # as SSD.forward does for an image without boxes
            matched.append(torch.full((num_anchors,), -1, dtype=torch.int64))
    expected = tv.compute_loss(targets, {"bbox_regression": loc, "cls_logits": logits}, [anchors_xyxy] * 3, matched)
    target_loc, target_labels = encode(boxes_norm, labels, anchors_cxcywh, cfg)
    assert torch.equal(target_labels > 0, torch.stack(matched) >= 0)  # the same positives
    loss = ssdzoo.ssd_loss(loc, logits, target_loc, target_labels, cfg)
    total = expected["bbox_regression"] + expected["classification"]
    assert abs(loss - total) <= 1e-5 * total


def test_finetuning_a_converted_torchvision_model_onto_other_classes(tmp_path):
    """`train --weights` from a converted SSDlite onto the 3 synthetic shapes: every tensor but
    the class convs comes from the file (lr 0 and frozen BN keep them as loaded), and a real
    learning rate trains (a finite loss, weights that move)."""
    from ssdzoo.data import make_synthetic_coco
    from ssdzoo.data.synthetic import SynthSpec
    from ssdzoo.engine.checkpoint import load_checkpoint
    from safetensors.torch import load_file

    name = "ssdlite320_mobilenet_v3_large"
    torch.save(torchvision_model(name, seed=5).state_dict(), tmp_path / "tv.pth")
    converted = tmp_path / "tv.safetensors"
    assert main(["convert", str(tmp_path / "tv.pth"), "--config", name, "--out", str(converted)]) == 0
    source = load_file(str(converted))
    data = tmp_path / "shapes"
    make_synthetic_coco(data, seed=2, num_train=8, num_val=0, progress=False,
                        spec=SynthSpec(min_side=64, max_side=96, min_object=16.0))
    small = [f"data_dir={data}", "classes=null", "num_classes=null", "image_size=[128,128]",
             "feature_size=[8,4,2,1,1,1]", "num_ssd_boxes=522", "batch_size=4", "num_parallel_workers=0",
             "amp_level=O0", "epoch_size=1", "warmup_epochs=0"]
    for lr, run in (("0", tmp_path / "frozen"), ("0.01", tmp_path / "trained")):
        extra = ["freeze_bn=true"] if lr == "0" else []
        assert main(["train", name, *small, f"ckpt_save_dir={run}", f"lr={lr}", f"lr_init={lr}", *extra,
                     "--weights", str(converted)]) == 0
    frozen, trained = (load_checkpoint(tmp_path / r / "last.pt") for r in ("frozen", "trained"))
    assert frozen["config"]["classes"] == ["background", "circle", "square", "triangle"]
    assert frozen["config"]["loss"] == "multibox"
    moved = 0
    for key, value in frozen["model"].items():
        if key.startswith("head.cls.") and key.split(".")[3] == "1":
            assert value.shape[0] == 6 * 4  # 6 boxes x 4 classes, started afresh
        elif not key.endswith("num_batches_tracked"):
            assert torch.equal(value, source[key]), key
            moved += not torch.equal(trained["model"][key], value)
    assert moved > 100


def test_int8_export_of_a_converted_model_runs_in_onnxruntime(tmp_path):
    from ssdzoo.inference import Predictor

    name = "ssdlite320_mobilenet_v3_large"
    torch.save(torchvision_model(name, seed=7).state_dict(), tmp_path / "tv.pth")
    converted = tmp_path / "tv.safetensors"
    assert main(["convert", str(tmp_path / "tv.pth"), "--config", name, "--out", str(converted)]) == 0
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in PHOTOS:
        (photos / photo.name).write_bytes(photo.read_bytes())
    out = tmp_path / "lite.int8.onnx"
    small = ["image_size=[128,128]", "feature_size=[8,4,2,1,1,1]", "num_ssd_boxes=522"]  # a quicker export
    assert main(["export", str(converted.with_suffix(".yaml")), *small, "--checkpoint", str(converted), "--out",
                 str(out), "--int8", "--calibration", str(photos), "--calibration-images", "2"]) == 0
    cfg = ssdzoo.load_config(converted.with_suffix(".yaml"), small)
    detections = Predictor.from_weights(cfg, out).predict([str(p) for p in PHOTOS])
    assert len(detections) == len(PHOTOS) and all(len(d.scores) for d in detections)


def test_a_users_own_class_count_converts_with_placeholder_names(tmp_path, capsys):
    """A torchvision SSDlite trained on 4 classes: the class count comes from the file."""
    torch.manual_seed(0)
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5).eval()
    torch.save(tv.state_dict(), tmp_path / "own.pth")
    out = tmp_path / "own.safetensors"
    assert main(["convert", str(tmp_path / "own.pth"), "--config", "ssdlite320_mobilenet_v3_large",
                 "--out", str(out)]) == 0
    cfg = ssdzoo.load_config(out.with_suffix(".yaml"))
    assert cfg.classes == ("background", "class_1", "class_2", "class_3", "class_4")
    model = ssdzoo.build_model(cfg, weights=out).eval()
    with torch.no_grad():
        images, _ = tv.transform([read_photo(PHOTOS[2])])
        expected = tv.head(list(tv.backbone(images.tensors).values()))["cls_logits"]
        assert torch.allclose(model(images.tensors)[1], expected, atol=1e-5)
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "own.pth"), "--config", "ssd_mobilenetv3",
                 "--out", str(tmp_path / "x.safetensors")]) == 2  # another recipe: one error naming the right one
    assert "needs the ssdlite320_mobilenet_v3_large recipe" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
