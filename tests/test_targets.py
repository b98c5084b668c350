import math

import torch

import ssdzoo
from ssdzoo import targets
from ssdzoo.targets import encode_offsets, match_anchors


def _cfg(**changes):
    return ssdzoo.load_config("ssd_mobilenetv2").replace(**changes)


def test_gt_equal_to_anchor_gets_zero_offsets():
    cfg = _cfg()
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    a = 700
    gt_xyxy = torch.cat([anchors_cxcywh[a, :2] - anchors_cxcywh[a, 2:] / 2,
                         anchors_cxcywh[a, :2] + anchors_cxcywh[a, 2:] / 2]).float()
    loc, labels = ssdzoo.encode(gt_xyxy[None, None], torch.tensor([[5]]), anchors_cxcywh, cfg)
    assert labels[0, a] == 5
    assert loc[0, a].abs().max() < 1e-5
    assert loc[0][labels[0] == 0].abs().max() == 0  # background anchors have no offsets


def test_decode_inverts_encode():
    cfg = _cfg()
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    gt_xyxy = torch.tensor([[[0.1, 0.2, 0.4, 0.7], [0.5, 0.5, 0.9, 0.8]]])
    loc, labels = ssdzoo.encode(gt_xyxy, torch.tensor([[1, 2]]), anchors_cxcywh, cfg)
    decoded = ssdzoo.decode(loc, anchors_cxcywh, cfg)
    for label, box in zip((1, 2), gt_xyxy[0]):
        positives = labels[0] == label
        assert positives.sum() >= 1
        torch.testing.assert_close(decoded[0, positives], box.expand(int(positives.sum()), 4), atol=1e-5, rtol=0)


def test_image_without_boxes_is_all_background():
    cfg = _cfg()
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    gt_xyxy = torch.tensor([[[0.1, 0.1, 0.5, 0.5]], [[0.0, 0.0, 0.0, 0.0]]])  # image 1: padding only
    loc, labels = ssdzoo.encode(gt_xyxy, torch.tensor([[3], [0]]), anchors_cxcywh, cfg)
    assert labels[0].max() == 3 and labels[1].max() == 0
    assert loc[1].abs().max() == 0
    empty = ssdzoo.encode(torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.long), anchors_cxcywh, cfg)
    assert empty[0].shape == (2, len(anchors_cxcywh), 4) and empty[1].max() == 0


def test_matching_rule_hand_case():
    """Two ground truths, four anchors (iou rows: ground truths)."""
    iou = torch.tensor([[[0.6, 0.3, 0.55, 0.1],
                         [0.6, 0.2, 0.70, 0.4]]])
    valid = torch.tensor([[True, True]])
    matched_gt, positive = match_anchors(iou, valid, threshold=0.5)
    # anchor 0: a tie at 0.6 is gt 0's best (forced to 2.0) -> gt 0; anchor 2: gt 1 is its best
    # (forced) -> gt 1; anchor 1 and 3: below the threshold
    assert matched_gt[0, [0, 2]].tolist() == [0, 1]
    assert positive[0].tolist() == [True, False, True, False]


def test_best_anchor_is_forced_even_below_threshold():
    iou = torch.tensor([[[0.1, 0.3, 0.2]]])
    _, positive = match_anchors(iou, torch.tensor([[True]]), threshold=0.5)
    assert positive[0].tolist() == [False, True, False]


def test_padding_rows_never_match():
    iou = torch.tensor([[[0.9, 0.9], [0.95, 0.95]]])
    matched_gt, positive = match_anchors(iou, torch.tensor([[True, False]]), threshold=0.5)
    assert matched_gt[0].tolist() == [0, 0] and positive.all()


def test_chunked_encode_equals_single_pass(monkeypatch):
    cfg = _cfg()
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    generator = torch.Generator().manual_seed(0)
    corner = torch.rand(5, 7, 2, generator=generator) * 0.6
    gt_xyxy = torch.cat([corner, corner + 0.05 + 0.3 * torch.rand(5, 7, 2, generator=generator)], -1)
    gt_labels = torch.randint(0, 4, (5, 7), generator=generator)
    whole = ssdzoo.encode(gt_xyxy, gt_labels, anchors_cxcywh, cfg)
    monkeypatch.setattr(targets, "_IOU_CHUNK_ELEMENTS", 1)  # one image per chunk
    chunked = ssdzoo.encode(gt_xyxy, gt_labels, anchors_cxcywh, cfg)
    torch.testing.assert_close(whole, chunked, rtol=0, atol=0)


def test_offsets_hand_case():
    offsets = encode_offsets(torch.tensor([[0.2, 0.2, 0.6, 0.6]]), torch.tensor([[0.5, 0.5, 0.2, 0.2]]),
                             prior_scaling=(0.1, 0.2))
    # centre 0.4 vs 0.5 over (0.2 * 0.1) = -5; size 0.4 / 0.2 = 2 -> log(2) / 0.2
    torch.testing.assert_close(offsets, torch.tensor([[-5.0, -5.0, 3.4657359, 3.4657359]]))


def test_paper_matching_is_inclusive_and_a_later_ground_truth_wins_a_shared_best_anchor():
    from ssdzoo.targets import match_anchors_paper

    # 2 ground truths (the third row is padding) x 4 anchors
    iou = torch.tensor([[[0.5, 0.3, 0.1, 0.0],
                         [0.2, 0.4, 0.1, 0.0],
                         [0.9, 0.9, 0.9, 0.9]]])
    valid = torch.tensor([[True, True, False]])
    matched, positive = match_anchors_paper(iou, valid, threshold=0.5)
    # anchor 0: IoU 0.5 >= 0.5 with gt 0; anchor 1: gt 1's best (0.4), forced; anchors 2, 3: negative
    assert positive.tolist() == [[True, True, False, False]]
    assert matched[0, :2].tolist() == [0, 1]
    shared = torch.tensor([[[0.3, 0.1], [0.35, 0.2]]])  # both ground truths' best anchor is 0
    matched, positive = match_anchors_paper(shared, torch.tensor([[True, True]]), threshold=0.5)
    assert matched[0, 0] == 1 and positive.tolist() == [[True, False]]


def test_decode_clamps_the_log_scale_as_torchvisions_box_coder():
    cfg = ssdzoo.load_config("ssd300_vgg16")
    anchors = torch.tensor([[0.5, 0.5, 0.01, 0.01]])
    loc = torch.tensor([[0.0, 0.0, 100.0, 100.0]])  # exp(20) without the clamp
    boxes = targets.decode(loc, anchors, cfg)
    half = 0.005 * math.exp(cfg.decode_max_log_scale)  # 0.3125: 1000 / 16 times the anchor's half side
    assert torch.allclose(boxes, torch.tensor([[0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half]]))
