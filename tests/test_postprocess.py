import pytest
import torch

import ssdzoo


def _cfg(**changes):
    return ssdzoo.load_config("ssd_mobilenetv2").replace(num_classes=3, classes=("bg", "a", "b"), **changes)


def test_nms_per_class_threshold_and_scaling():
    boxes_xyxy = torch.tensor([[[0.1, 0.1, 0.5, 0.5],     # a: 0.9
                                [0.1, 0.1, 0.5, 0.52],    # a: 0.8, overlaps the first -> suppressed
                                [0.6, 0.6, 0.9, 0.9],     # a: 0.05 (under min_score), b: 0.7
                                [0.1, 0.1, 0.5, 0.5]]])   # b: 0.6 (other class: kept)
    probs = torch.tensor([[[0.0, 0.9, 0.0], [0.0, 0.8, 0.0], [0.0, 0.05, 0.7], [0.0, 0.0, 0.6]]])
    (dets,) = ssdzoo.postprocess(boxes_xyxy, probs, _cfg(), torch.tensor([[200, 100]]))  # h 200, w 100
    assert dets.labels.tolist() == [1, 2, 2]
    torch.testing.assert_close(dets.scores, torch.tensor([0.9, 0.7, 0.6]))
    torch.testing.assert_close(dets.boxes[0], torch.tensor([10.0, 20.0, 50.0, 100.0]))


def test_score_threshold_is_strict():
    probs = torch.tensor([[[0.0, 0.1, 0.0]]])
    (dets,) = ssdzoo.postprocess(torch.tensor([[[0.1, 0.1, 0.2, 0.2]]]), probs, _cfg(min_score=0.1), torch.tensor([[10, 10]]))
    assert len(dets.scores) == 0


def test_max_boxes_per_class_and_batch():
    # 10 disjoint boxes per image, two classes each
    corners = torch.linspace(0, 0.9, 10)
    boxes_xyxy = torch.stack([corners, corners, corners + 0.05, corners + 0.05], -1)[None].repeat(2, 1, 1)
    probs = torch.zeros(2, 10, 3)
    probs[..., 1] = torch.linspace(0.9, 0.5, 10)
    probs[1, :, 2] = 0.95
    detections = ssdzoo.postprocess(boxes_xyxy, probs, _cfg(max_boxes=3), torch.tensor([[100, 100], [50, 50]]))
    assert detections[0].labels.tolist() == [1, 1, 1]
    assert detections[1].labels.tolist() == [1, 1, 1, 2, 2, 2]
    torch.testing.assert_close(detections[0].scores, probs[0, :3, 1])


def test_seed_pixel_convention():
    """Pixel boxes 0..9 and 5..14 (width 10 in the seed's +1 convention): IoU 5*10 / 150 = 1/3."""
    boxes_xyxy = torch.tensor([[[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]]]) / 100
    probs = torch.tensor([[[0.0, 0.9, 0.0], [0.0, 0.8, 0.0]]])
    hw = torch.tensor([[100, 100]])
    kept = ssdzoo.postprocess(boxes_xyxy, probs, _cfg(nms_threshold=0.34), hw)[0]
    suppressed = ssdzoo.postprocess(boxes_xyxy, probs, _cfg(nms_threshold=0.33), hw)[0]
    assert len(kept.scores) == 2 and len(suppressed.scores) == 1


def test_no_candidates():
    detections = ssdzoo.postprocess(torch.rand(2, 5, 4), torch.zeros(2, 5, 3), _cfg(), torch.tensor([[9, 9], [9, 9]]))
    assert [len(d.scores) for d in detections] == [0, 0]
    assert detections[0].boxes.shape == (0, 4)


def test_pre_nms_top_k_keeps_each_class_best_candidates():
    # three disjoint boxes; class a scores 0.9, 0.8, 0.7, class b 0.6, 0.5, 0.4
    boxes_xyxy = torch.tensor([[[0.0, 0.0, 0.1, 0.1], [0.2, 0.2, 0.3, 0.3], [0.4, 0.4, 0.5, 0.5]]])
    probs = torch.tensor([[[0.0, 0.9, 0.6], [0.0, 0.8, 0.5], [0.0, 0.7, 0.4]]])
    hw = torch.tensor([[100, 100]])
    (dets,) = ssdzoo.postprocess(boxes_xyxy, probs, _cfg(pre_nms_top_k=2), hw)
    assert dets.labels.tolist() == [1, 1, 2, 2]
    torch.testing.assert_close(dets.scores, torch.tensor([0.9, 0.8, 0.6, 0.5]))


def test_pre_nms_top_k_comes_before_nms():
    # the best box suppresses the second; with top-2 the third never becomes a candidate
    boxes_xyxy = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]])
    probs = torch.tensor([[[0.0, 0.9, 0.0], [0.0, 0.8, 0.0], [0.0, 0.7, 0.0]]])
    (dets,) = ssdzoo.postprocess(boxes_xyxy, probs, _cfg(pre_nms_top_k=2), torch.tensor([[100, 100]]))
    assert dets.scores.tolist() == pytest.approx([0.9])


def test_max_detections_keeps_each_image_best_after_nms():
    corners = torch.linspace(0, 0.9, 10)
    boxes_xyxy = torch.stack([corners, corners, corners + 0.05, corners + 0.05], -1)[None].repeat(2, 1, 1)
    probs = torch.zeros(2, 10, 3)
    probs[..., 1] = torch.linspace(0.9, 0.5, 10)
    probs[..., 2] = torch.linspace(0.85, 0.45, 10)
    detections = ssdzoo.postprocess(boxes_xyxy, probs, _cfg(max_detections=3), torch.tensor([[100, 100], [50, 50]]))
    for dets in detections:  # 0.9, 0.86 (a), 0.85 (b); still ordered by label, then score
        assert dets.labels.tolist() == [1, 1, 2]
        torch.testing.assert_close(dets.scores, torch.tensor([0.9, probs[0, 1, 1].item(), 0.85]))


def test_clip_boxes_clips_to_the_image_before_nms():
    # unclipped, the two boxes overlap by 0.4 / 0.8 = 0.5; clipped to x >= 0, by 0.4 / 0.6
    boxes_xyxy = torch.tensor([[[-0.2, 0.0, 0.4, 1.0], [0.0, 0.0, 0.6, 1.0]]])
    probs = torch.tensor([[[0.0, 0.9, 0.0], [0.0, 0.8, 0.0]]])
    hw = torch.tensor([[100, 100]])
    cfg = _cfg(nms_plus_one=False, nms_threshold=0.6)
    assert len(ssdzoo.postprocess(boxes_xyxy, probs, cfg, hw)[0].scores) == 2
    (dets,) = ssdzoo.postprocess(boxes_xyxy, probs, cfg.replace(clip_boxes=True), hw)
    assert len(dets.scores) == 1
    torch.testing.assert_close(dets.boxes, torch.tensor([[0.0, 0.0, 40.0, 100.0]]))


def test_class_scores_follow_score_activation():
    from ssdzoo.postprocess import class_scores

    logits = torch.tensor([[0.0, 1.0, -1.0]])
    torch.testing.assert_close(class_scores(logits, _cfg()), logits.sigmoid())
    torch.testing.assert_close(class_scores(logits, _cfg(score_activation="softmax")), logits.softmax(-1))


@pytest.mark.parametrize("override", ["score_activation=tanh", "pre_nms_top_k=0", "max_detections=-1"])
def test_postprocess_keys_are_checked(override):
    with pytest.raises(ssdzoo.config.ConfigError, match=override.split("=")[0]):
        ssdzoo.load_config("ssd_mobilenetv2", [override])


def test_accelerator_chunking_gives_the_seed_detections(monkeypatch):
    """The golden cases as one batch, with the chunking an accelerator gets (one large padded
    table a round instead of chunks of similar group size): the seed's detections still."""
    import importlib

    import numpy as np

    from conftest import load_golden, yx_to_xy
    from ssdzoo.bench.box_ops import same_detections
    from ssdzoo.bench.seed_reference import seed_postprocess

    ref = load_golden("postprocess.npz")
    boxes_xyxy = torch.stack([torch.from_numpy(yx_to_xy(ref[f"case{c}_boxes"])) for c in range(6)])
    probs = torch.stack([torch.from_numpy(ref[f"case{c}_scores"]) for c in range(6)])
    image_hw = torch.stack([torch.from_numpy(ref[f"case{c}_hw"]) for c in range(6)])
    cfg = ssdzoo.load_config("ssd_mobilenetv2")
    module = importlib.import_module("ssdzoo.postprocess")  # the module, not the function ssdzoo exports
    monkeypatch.setattr(module, "_chunking", lambda device: (module._NMS_CHUNK_ELEMENTS_ACCELERATOR, False))
    detections = ssdzoo.postprocess(boxes_xyxy, probs, cfg, image_hw)
    for c, dets in enumerate(detections):
        seed = seed_postprocess(ref[f"case{c}_boxes"], ref[f"case{c}_scores"], tuple(ref[f"case{c}_hw"]),
                                min_score=cfg.min_score, nms_threshold=cfg.nms_threshold, max_boxes=cfg.max_boxes)
        assert len(seed) > 0 and same_detections(dets, np.asarray(seed))
