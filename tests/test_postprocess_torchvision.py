"""ssdzoo.postprocess with torchvision's settings against torchvision's own SSD post-processing
(``SSD.postprocess_detections`` + ``GeneralizedRCNNTransform.postprocess``) on random head
outputs of its two SSDs, built with random weights (nothing downloaded)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large
from torchvision.models.detection.image_list import ImageList

import ssdzoo
from ssdzoo.boxes import xyxy_to_cxcywh
from ssdzoo.postprocess import class_scores, decode_outputs

ORIGINAL_HW = ((480, 640), (375, 500))  # under 1024 px: float32 pixels hold 1e-4


def torchvision_settings(model) -> dict:
    """The config keys that give ``model``'s post-processing."""
    return dict(score_activation="softmax", min_score=model.score_thresh, nms_threshold=model.nms_thresh,
                pre_nms_top_k=model.topk_candidates, max_detections=model.detections_per_img,
                max_boxes=model.topk_candidates, clip_boxes=True, nms_plus_one=False)


@pytest.fixture(scope="module", params=["ssd300_vgg16", "ssdlite320_mobilenet_v3_large"])
def torchvision_ssd(request):
    build = {"ssd300_vgg16": ssd300_vgg16, "ssdlite320_mobilenet_v3_large": ssdlite320_mobilenet_v3_large}
    torch.manual_seed(0)
    model = build[request.param](weights=None, weights_backbone=None).eval()
    height, width = model.transform.fixed_size or (model.transform.min_size[0], model.transform.max_size)
    with torch.inference_mode():
        features = list(model.backbone(torch.zeros(1, 3, height, width)).values())
    images = ImageList(torch.zeros(len(ORIGINAL_HW), 3, height, width), [(height, width)] * len(ORIGINAL_HW))
    anchors_xyxy = model.anchor_generator(images, features)  # per image, (A, 4) in pixels
    return model, (height, width), anchors_xyxy


@pytest.mark.parametrize("decoded_by", ["torchvision", "ssdzoo"])
@pytest.mark.parametrize("seed", [0, 1])
def test_postprocess_equals_torchvision(torchvision_ssd, seed, decoded_by):
    """Boxes decoded by torchvision's box coder (post-processing alone), or the whole path from
    the head's outputs: ``decode_outputs`` with torchvision's default boxes, then ``postprocess``."""
    model, (height, width), anchors_xyxy = torchvision_ssd
    num_images, num_anchors, num_classes = len(ORIGINAL_HW), len(anchors_xyxy[0]), 91
    generator = torch.Generator().manual_seed(seed)
    # spread logits: some classes of each anchor far over the threshold, most under it
    head_outputs = {"bbox_regression": torch.randn(num_images, num_anchors, 4, generator=generator),
                    "cls_logits": 3 * torch.randn(num_images, num_anchors, num_classes, generator=generator)}
    with torch.inference_mode():
        expected = model.postprocess_detections(head_outputs, anchors_xyxy, [(height, width)] * num_images)
        expected = model.transform.postprocess(expected, [(height, width)] * num_images, list(ORIGINAL_HW))
        # torchvision's decoded boxes, unclipped, normalized to the network input
        boxes_xyxy = torch.stack([model.box_coder.decode_single(loc, anchors) for loc, anchors in
                                  zip(head_outputs["bbox_regression"], anchors_xyxy)])
        boxes_xyxy = boxes_xyxy / torch.tensor([width, height, width, height])
    cfg = ssdzoo.load_config("ssd_mobilenetv2").replace(**torchvision_settings(model))
    probs = class_scores(head_outputs["cls_logits"], cfg)
    if decoded_by == "ssdzoo":
        anchors_cxcywh = xyxy_to_cxcywh(anchors_xyxy[0] / torch.tensor([width, height, width, height]))
        boxes_xyxy, probs = decode_outputs(head_outputs["bbox_regression"], head_outputs["cls_logits"],
                                           anchors_cxcywh, cfg)
    got = ssdzoo.postprocess(boxes_xyxy, probs, cfg, torch.tensor(ORIGINAL_HW))

    # the per-class top-k binds (about 1,000 candidates per class) and so does the per-image cap
    assert all(len(d["scores"]) == model.detections_per_img for d in expected)
    for mine, theirs in zip(got, expected):
        assert len(mine.scores) == len(theirs["scores"])
        mine_rows, theirs_rows = (_sorted_rows(*d) for d in (
            (mine.labels, mine.scores, mine.boxes), (theirs["labels"], theirs["scores"], theirs["boxes"])))
        torch.testing.assert_close(mine_rows[:, :2], theirs_rows[:, :2], rtol=0, atol=0)  # label, score
        # boxes in pixels; the two decodes round in another order (normalized, or in network
        # pixels), each coordinate within a float32 ulp or two of the other's
        rtol = 0 if decoded_by == "torchvision" else 3e-7
        torch.testing.assert_close(mine_rows[:, 2:], theirs_rows[:, 2:], rtol=rtol, atol=1e-4)


def _sorted_rows(labels, scores, boxes_xyxy):
    """(D, 6) float64 rows (label, score, box), sorted: detections as a set."""
    rows = torch.cat([labels[:, None].double(), scores[:, None].double(), boxes_xyxy.double()], dim=1)
    for column in (2, 1, 0):  # stable sorts: label, then score, then x1
        rows = rows[torch.sort(rows[:, column], stable=True).indices]
    return rows
