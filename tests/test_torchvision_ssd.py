"""torchvision's SSD300-VGG16 and SSDlite320-MobileNetV3 as ssdzoo models, checked against
torchvision's own code: the same head outputs, default boxes, detections and loss.

torchvision's models are built with seeded random weights (weights=None, weights_backbone=None:
nothing downloads), their state dicts converted by `ssdzoo convert`; conv weights are redrawn
(He-normal) and the class head scaled so that random weights give confident, image-dependent
detections on the repository's public-domain photos.
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
        spread = model.head(list(model.backbone(images.tensors).values()))["cls_logits"].std()
        for module in model.head.classification_head.module_list:
            last = module[-1] if isinstance(module, torch.nn.Sequential) else module
            last.weight.mul_(1.5 / spread)
            last.bias.mul_(1.5 / spread)
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


@pytest.mark.parametrize("name", list(BUILDERS))
def test_default_boxes_equal_torchvisions(name):
    cfg = ssdzoo.load_config(name)
    torch.manual_seed(0)
    tv = BUILDERS[name](weights=None, weights_backbone=None).eval()
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
        # a box clipped flat at the image edge has no area and no IoU: there the corners must agree
        flat = (expected["boxes"][strong][:, None, 2:] <= expected["boxes"][strong][:, None, :2]).any(-1)
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
