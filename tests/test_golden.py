"""Parity with the seed's own numpy code (tests/golden, see its README)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ssdzoo
from conftest import load_golden, yx_to_xy

RECIPES = [("ssd_mobilenetv2", "mnv2_300.npz", 1917), ("ssd_resnet50_fpn", "r50fpn_640.npz", 51150)]


@pytest.mark.parametrize("recipe, golden, count", RECIPES)
def test_default_boxes(recipe, golden, count):
    cfg, ref = ssdzoo.load_config(recipe), load_golden(golden)
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    assert anchors_cxcywh.shape == (count, 4)
    np.testing.assert_allclose(anchors_cxcywh.numpy(), yx_to_xy(ref["default_boxes_cy_cx_h_w"]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("recipe, golden, count", RECIPES)
def test_decode(recipe, golden, count):
    cfg, ref = ssdzoo.load_config(recipe), load_golden(golden)
    loc = torch.from_numpy(yx_to_xy(ref["decode_pred_loc"]))
    boxes_xyxy = ssdzoo.decode(loc, ssdzoo.default_boxes(cfg), cfg)
    np.testing.assert_allclose(boxes_xyxy.numpy(), yx_to_xy(ref["decode_boxes_y1_x1_y2_x2"]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("recipe, golden, count", RECIPES)
def test_encode(recipe, golden, count):
    cfg, ref = ssdzoo.load_config(recipe), load_golden(golden)
    gt = ref["encode_gt_y1_x1_y2_x2_label"]  # (20, 30, 5), padded with zero rows
    gt_boxes_xyxy = torch.from_numpy(yx_to_xy(gt[..., :4]))
    gt_labels = torch.from_numpy(gt[..., 4]).long()
    assert (gt_labels > 0).sum(1).tolist() == ref["encode_gt_count"].tolist()

    target_loc, target_labels = ssdzoo.encode(gt_boxes_xyxy, gt_labels, ssdzoo.default_boxes(cfg), cfg)

    agree = target_labels.numpy() == ref["encode_label"]
    assert agree.mean() >= 0.999, f"labels agree on {agree.mean():.5%} of anchors"
    np.testing.assert_allclose(target_loc.numpy()[agree], yx_to_xy(ref["encode_loc"])[agree], atol=1e-4, rtol=0)
    matched = (target_labels > 0).sum(1).numpy()
    assert np.abs(matched - ref["encode_num_matched"]).max() <= 2


def test_encode_mobilenet_recipe_is_exact():
    """With the seed's float64 anchor corners, even the exact IoU ties break the seed's way."""
    cfg, ref = ssdzoo.load_config("ssd_mobilenetv2"), load_golden("mnv2_300.npz")
    gt = ref["encode_gt_y1_x1_y2_x2_label"]
    _, target_labels = ssdzoo.encode(torch.from_numpy(yx_to_xy(gt[..., :4])), torch.from_numpy(gt[..., 4]).long(),
                                     ssdzoo.default_boxes(cfg), cfg)
    np.testing.assert_array_equal(target_labels.numpy(), ref["encode_label"])


@pytest.mark.parametrize("alpha", [0.75, 0.25])
def test_loss(alpha):
    ref = load_golden("loss.npz")
    cfg = ssdzoo.load_config("ssd_mobilenetv2", [f"alpha={alpha}", "gamma=2.0"])
    loss = ssdzoo.ssd_loss(torch.from_numpy(yx_to_xy(ref["pred_loc"])), torch.from_numpy(ref["pred_logits"]),
                           torch.from_numpy(yx_to_xy(ref["gt_loc"])), torch.from_numpy(ref["gt_label"]), cfg)
    expected = float(ref[f"loss_g2.0_a{alpha}"])
    assert abs(loss.item() - expected) <= 1e-5 * abs(expected)


def test_lr_schedule():
    ref = load_golden("lr_schedule.npz")
    cfg = ssdzoo.load_config("ssd_mobilenetv2", ["lr=0.05", "lr_init=0.001", "lr_end_rate=0.001",
                                                 "warmup_epochs=2", "epoch_size=20"])
    rates = ssdzoo.lr_schedule(cfg, int(ref["steps_per_epoch"]))
    assert len(rates) == len(ref["lr"]) == 200
    np.testing.assert_allclose(rates, ref["lr"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("case", range(6))
def test_postprocess(case):
    ref = load_golden("postprocess.npz")
    cfg = ssdzoo.load_config("ssd_mobilenetv2")
    boxes_xyxy = torch.from_numpy(yx_to_xy(ref[f"case{case}_boxes"]))[None]
    probs = torch.from_numpy(ref[f"case{case}_scores"])[None]
    (dets,) = ssdzoo.postprocess(boxes_xyxy, probs, cfg, torch.from_numpy(ref[f"case{case}_hw"])[None])

    seed = ref[f"case{case}_dets"]  # rows: class, x, y, w, h (pixels), score
    coco_bbox_xywh = torch.cat([dets.boxes[:, :2], dets.boxes[:, 2:] - dets.boxes[:, :2]], 1)
    ours = np.concatenate([dets.labels[:, None].numpy(), coco_bbox_xywh.numpy(), dets.scores[:, None].numpy()], 1)

    kept = _count_matches(seed, ours)
    assert kept >= 0.995 * len(seed), f"kept {kept} of the seed's {len(seed)} detections"
    assert len(ours) <= len(seed) + 0.005 * len(seed)
    # the seed's order: class ascending, then score descending
    order = np.lexsort((-ours[:, 5], ours[:, 0]))
    np.testing.assert_array_equal(order, np.arange(len(ours)))


def _count_matches(seed: np.ndarray, ours: np.ndarray) -> int:
    """Seed detections that have a partner in ours: same class, score and box (to float32)."""
    unused = np.ones(len(ours), dtype=bool)
    count = 0
    for row in seed:
        same = unused & (ours[:, 0] == row[0]) & (np.abs(ours[:, 5] - row[5]) < 1e-6) \
            & (np.abs(ours[:, 1:5] - row[1:5]).max(axis=1) < 1e-3)
        if same.any():
            unused[np.argmax(same)] = False
            count += 1
    return count
