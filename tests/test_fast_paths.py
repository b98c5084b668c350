"""The fast target encoding and post-processing give exactly the seed's results on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ssdzoo
from ssdzoo.bench.box_ops import random_ground_truth, same_detections
from ssdzoo.bench.seed_reference import seed_encode, seed_nms, seed_postprocess
from ssdzoo.boxes import cxcywh_to_xyxy, pairwise_iou
from ssdzoo.postprocess import greedy_nms, greedy_nms_padded, ranked_candidates, select_detections
from ssdzoo.targets import assign_all, assign_positives, encode_offsets, first_argmax, match_anchors


def _cfg(recipe="ssd_mobilenetv2"):
    return ssdzoo.load_config(recipe)


def _ground_truth(kind: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, G, 4) boxes and (N, G) labels of one kind of batch; 0 labels are padding rows."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "one box":
        return random_ground_truth(3, 1, num_classes=81, generator=generator)
    if kind == "many boxes":
        return random_ground_truth(2, 60, num_classes=81, generator=generator)
    boxes, labels = random_ground_truth(6, 9, num_classes=81, generator=generator)
    if kind == "padding":
        labels[0] = 0  # an empty image
        labels[1, 3:] = 0  # trailing padding
        labels[2, ::2] = 0  # padding rows between real ones, with real-looking boxes
        boxes[3, 5:] = 0
        labels[3, 5:] = 0
    elif kind == "ties":
        boxes[:, 1] = boxes[:, 0]  # duplicate ground truths: equal IoU everywhere
        anchors_xyxy = cxcywh_to_xyxy(ssdzoo.default_boxes(_cfg()).double()).float()
        boxes[:, 2] = anchors_xyxy[torch.randint(0, len(anchors_xyxy), (6,), generator=generator)]
        boxes[:, 3, 2:] = boxes[:, 3, :2]  # zero-size boxes
        boxes[:, 4] = torch.tensor([-0.2, -0.1, 1.3, 0.4])  # partly outside the image
    return boxes, labels


def _reference_encode(gt_boxes_xyxy, gt_labels, anchors_cxcywh, cfg):
    """The straightforward batched algorithm: IoU table, ``match_anchors``, offsets everywhere."""
    anchors_xyxy = cxcywh_to_xyxy(anchors_cxcywh.double()).float()
    matched_gt, positive = match_anchors(pairwise_iou(gt_boxes_xyxy, anchors_xyxy), gt_labels > 0,
                                         threshold=cfg.match_threshold)
    labels = gt_labels.gather(1, matched_gt).masked_fill(~positive, 0)
    boxes = gt_boxes_xyxy.gather(1, matched_gt[..., None].expand(-1, -1, 4))
    loc = encode_offsets(boxes, anchors_cxcywh.float(), prior_scaling=cfg.prior_scaling)
    return loc.masked_fill(~positive[..., None], 0.0), labels


def _seed_encode_batch(gt_boxes_xyxy, gt_labels, anchors_cxcywh, cfg):
    anchors_cyxhw = anchors_cxcywh.float().numpy()[:, [1, 0, 3, 2]]
    anchors_yxyx = cxcywh_to_xyxy(anchors_cxcywh.double()).float().numpy()[:, [1, 0, 3, 2]]
    loc, labels = [], []
    for boxes, image_labels in zip(gt_boxes_xyxy.numpy(), gt_labels.numpy()):
        real = image_labels > 0
        image_loc, image_target = seed_encode(boxes[real][:, [1, 0, 3, 2]], image_labels[real], anchors_cyxhw,
                                              anchors_yxyx, threshold=cfg.match_threshold,
                                              prior_scaling=cfg.prior_scaling)
        loc.append(image_loc[:, [1, 0, 3, 2]])
        labels.append(image_target)
    return np.stack(loc), np.stack(labels)


@pytest.mark.parametrize("kind", ["random", "one box", "many boxes", "padding", "ties"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_encode_is_the_reference_bit_for_bit(kind, seed):
    cfg = _cfg()
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    gt_boxes_xyxy, gt_labels = _ground_truth(kind, seed)
    loc, labels = ssdzoo.encode(gt_boxes_xyxy, gt_labels, anchors_cxcywh, cfg)
    ref_loc, ref_labels = _reference_encode(gt_boxes_xyxy, gt_labels, anchors_cxcywh, cfg)
    assert torch.equal(labels, ref_labels)
    assert torch.equal(loc.view(torch.int32), ref_loc.view(torch.int32))  # bits, zeros' signs included


@pytest.mark.parametrize("kind", ["random", "one box", "many boxes", "padding", "ties"])
def test_encode_matches_the_seed(kind):
    """Labels exactly; offsets up to the last bit of numpy's and torch's float32 log."""
    cfg = _cfg()
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    gt_boxes_xyxy, gt_labels = _ground_truth(kind, seed=3)
    loc, labels = ssdzoo.encode(gt_boxes_xyxy, gt_labels, anchors_cxcywh, cfg)
    seed_loc, seed_labels = _seed_encode_batch(gt_boxes_xyxy, gt_labels, anchors_cxcywh, cfg)
    np.testing.assert_array_equal(labels.numpy(), seed_labels)
    np.testing.assert_allclose(loc.numpy(), seed_loc, rtol=2e-7, atol=1e-6)
    np.testing.assert_array_equal(loc[..., :2].numpy(), seed_loc[..., :2])  # the centre offsets use no log


def test_best_anchor_ties_and_forcing_match_the_reference_and_the_seed():
    """A box halfway between two equal anchors has the same IoU (0.579) with both: its forced best
    anchor is the first. With a second box equal to that anchor, both force it to 2.0 and the
    earlier ground truth wins it, in either order; on the seed's side too."""
    cfg = _cfg()
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    anchors_xyxy = cxcywh_to_xyxy(anchors_cxcywh.double()).float()
    centre = (anchors_cxcywh[12, :2] + anchors_cxcywh[15, :2]) / 2  # level 0, next column, same size
    halfway = cxcywh_to_xyxy(torch.cat([centre, torch.tensor([0.1, 0.1], dtype=torch.float64)])).float()
    iou = pairwise_iou(halfway[None], anchors_xyxy)[0]
    assert iou[12] == iou[15] == iou.max() and iou.max() > cfg.match_threshold
    gt_boxes_xyxy = torch.stack([torch.stack([halfway, anchors_xyxy[12]]), torch.stack([anchors_xyxy[12], halfway]),
                                 torch.stack([halfway, torch.zeros(4)])])
    gt_labels = torch.tensor([[1, 2], [3, 4], [5, 0]])
    loc, labels = ssdzoo.encode(gt_boxes_xyxy, gt_labels, anchors_cxcywh, cfg)
    ref_loc, ref_labels = _reference_encode(gt_boxes_xyxy, gt_labels, anchors_cxcywh, cfg)
    assert torch.equal(labels, ref_labels) and torch.equal(loc, ref_loc)
    assert labels[:, 12].tolist() == [1, 3, 5] and labels[0, 15] == 1 and labels[1, 15] == 4
    np.testing.assert_array_equal(labels.numpy(), _seed_encode_batch(gt_boxes_xyxy, gt_labels, anchors_cxcywh, cfg)[1])


def test_grid_anchor_recipe_encode_is_the_reference():
    cfg = _cfg("ssd_resnet50_fpn")
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    gt_boxes_xyxy, gt_labels = _ground_truth("padding", seed=4)
    loc, labels = ssdzoo.encode(gt_boxes_xyxy[:4], gt_labels[:4], anchors_cxcywh, cfg)
    ref_loc, ref_labels = _reference_encode(gt_boxes_xyxy[:4], gt_labels[:4], anchors_cxcywh, cfg)
    assert torch.equal(labels, ref_labels) and torch.equal(loc, ref_loc)


def test_positive_only_and_every_anchor_assignments_agree():
    """The CPU path (positives only) and the accelerator path (every anchor), both on the CPU."""
    cfg = _cfg()
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    anchors_xyxy = cxcywh_to_xyxy(anchors_cxcywh.double()).float()
    for kind in ("ties", "padding"):
        gt_boxes_xyxy, gt_labels = _ground_truth(kind, seed=5)
        args = (gt_boxes_xyxy, gt_labels, anchors_xyxy, anchors_cxcywh.float())
        kwargs = dict(threshold=cfg.match_threshold, prior_scaling=cfg.prior_scaling)
        sparse, dense = assign_positives(*args, **kwargs), assign_all(*args, **kwargs)
        assert torch.equal(sparse[1], dense[1]) and torch.equal(sparse[0], dense[0])


def test_first_argmax_is_argmax():
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (5, 6, 7), generator=generator).float()  # many ties
    for dim in (0, 1, 2, -1):
        assert torch.equal(first_argmax(x, dim=dim), x.argmax(dim=dim, keepdim=True))


def _predictions(num_anchors, num_classes, *, density, clusters=0, cluster_size=0, seed):
    """(A, 4) boxes and (A, C) probabilities, a ``density`` share of them over 0.1, all distinct
    within a class (so that the seed's order is defined); ``clusters`` objects covered by
    ``cluster_size`` overlapping boxes each, with high scores for one class: heavy suppression."""
    generator = torch.Generator().manual_seed(seed)
    size = 0.04 + 0.4 * torch.rand(num_anchors, 2, generator=generator)
    corner = (1 - size) * torch.rand(num_anchors, 2, generator=generator)
    u = (torch.randperm(num_anchors * num_classes, generator=generator).double() + 1) / (num_anchors * num_classes + 1)
    u = u.view(num_anchors, num_classes)
    probs = torch.where(u > 1 - density, 0.1 + (u - 1 + density) * 0.9 / max(density, 1e-9), 0.1 * u / (1 - density))
    for c in range(clusters):
        anchors = torch.randperm(num_anchors, generator=generator)[:cluster_size]
        centre = 0.2 + 0.6 * torch.rand(2, generator=generator)
        size[anchors] = 0.2 * (1 + 0.1 * torch.randn(cluster_size, 2, generator=generator))
        corner[anchors] = centre - size[anchors] / 2 + 0.02 * torch.randn(cluster_size, 2, generator=generator)
        probs[anchors, 1 + c % (num_classes - 1)] = 0.2 + 0.79 * u[anchors, 0]
    probs = probs.float()
    for column in probs[:, 1:].T:
        candidates = column[column > 0.1]
        assert len(candidates.unique()) == len(candidates), "tied scores: pick another seed"
    return torch.cat([corner, corner + size], -1).float(), probs


def _check_against_seed(boxes_xyxy, probs, image_hw, *, max_per_class=100, nms_threshold=0.6, **kwargs):
    (dets,) = select_detections(boxes_xyxy[None], probs[None], torch.tensor([image_hw]), min_score=0.1,
                                nms_threshold=nms_threshold, max_per_class=max_per_class, **kwargs)
    seed = seed_postprocess(boxes_xyxy[:, [1, 0, 3, 2]].numpy(), probs.numpy(), image_hw, min_score=0.1,
                            nms_threshold=nms_threshold, max_boxes=max_per_class)
    assert len(dets.scores) == len(seed)
    # in the seed's order, row by row (scores are distinct, so the order is defined)
    np.testing.assert_array_equal(dets.labels.numpy(), seed[:, 0])
    np.testing.assert_array_equal(dets.scores.double().numpy(), seed[:, 5])
    seed_xyxy = np.concatenate([seed[:, 1:3], seed[:, 1:3] + seed[:, 3:5]], 1)
    np.testing.assert_allclose(dets.boxes.double().numpy(), seed_xyxy, rtol=0, atol=1e-3)
    assert same_detections(dets, seed)
    return dets


@pytest.mark.parametrize("density", [0.0005, 0.02, 0.3, 0.9])
@pytest.mark.parametrize("seed", [0, 1])
def test_postprocess_matches_the_seed(density, seed):
    """Groups from a few candidates to ~350 (over top_k: the prefilter and its check)."""
    boxes_xyxy, probs = _predictions(400, 9, density=density, seed=seed)
    _check_against_seed(boxes_xyxy, probs, (417, 593))


@pytest.mark.parametrize("max_per_class", [1, 7, 100])
def test_postprocess_heavy_suppression_matches_the_seed(max_per_class):
    """Clusters of 300 overlapping boxes: the top 128 of a group keep fewer than max_per_class,
    so those groups are redone with more candidates."""
    boxes_xyxy, probs = _predictions(900, 5, density=0.05, clusters=3, cluster_size=300, seed=7)
    dets = _check_against_seed(boxes_xyxy, probs, (300, 500), max_per_class=max_per_class)
    assert len(dets.scores) > 0


def test_nms_rounds_of_doubling_give_the_same_survivors():
    """Starting from top_k 1, 2 or 5 (several rounds of doubling) changes nothing."""
    boxes_xyxy, probs = _predictions(300, 4, density=0.3, clusters=2, cluster_size=100, seed=8)
    image_i, anchor_i, class_i, _ = ranked_candidates(probs[None, :, 1:], min_score=0.1)
    boxes_px = boxes_xyxy.double()[anchor_i] * 300
    in_one_round = greedy_nms(boxes_px, class_i, threshold=0.6, max_keep=20, top_k=1000)
    for top_k in (1, 2, 5):
        assert torch.equal(greedy_nms(boxes_px, class_i, threshold=0.6, max_keep=20, top_k=top_k), in_one_round)


def test_batched_postprocess_equals_one_image_at_a_time():
    batch = [_predictions(300, 6, density=d, seed=s) for s, d in enumerate([0.01, 0.2, 0.0])]
    boxes_xyxy, probs = torch.stack([b for b, _ in batch]), torch.stack([p for _, p in batch])
    image_hw = torch.tensor([[300, 400], [480, 640], [100, 100]])
    cfg = ssdzoo.load_config("ssd_mobilenetv2").replace(num_classes=6, classes=tuple("abcdef"))
    together = ssdzoo.postprocess(boxes_xyxy, probs, cfg, image_hw)
    for i, dets in enumerate(together):
        (alone,) = ssdzoo.postprocess(boxes_xyxy[i:i + 1], probs[i:i + 1], cfg, image_hw[i:i + 1])
        for a, b in zip(dets, alone):
            assert torch.equal(a, b)
    assert len(together[2].scores) == 0


@pytest.mark.parametrize("seed", range(4))
def test_padded_nms_is_greedy_nms(seed):
    """Chains of boxes, each overlapping the next (the fixed point's slowest case), and random
    ones, against the seed's sequential loop per group."""
    generator = torch.Generator().manual_seed(seed)
    groups, k = 5, 40
    x = torch.cumsum(2 + 3 * torch.rand(groups, k, generator=generator), 1)  # chain: step 2..5 px, width 10
    chain = torch.stack([x, torch.zeros_like(x), x + 10, torch.full_like(x, 10)], -1)
    corner = 100 * torch.rand(groups, k, 2, generator=generator)
    scattered = torch.cat([corner, corner + 10 + 30 * torch.rand(groups, k, 2, generator=generator)], -1)
    for boxes_px in (chain.double(), scattered.double()):
        valid = torch.rand(groups, k, generator=generator) < 0.9
        valid[:, 0] = True
        keep = greedy_nms_padded(boxes_px, valid, threshold=0.3)
        for g in range(groups):
            rows = valid[g].nonzero()[:, 0]
            # the seed sorts by score: scores falling with rank give the rank order
            scores = -rows.double().numpy()
            kept = seed_nms(boxes_px[g, rows][:, [1, 0, 3, 2]].numpy(), scores, threshold=0.3, max_boxes=k)
            assert sorted(rows[kept].tolist()) == keep[g].nonzero()[:, 0].tolist()


def test_benchmarks_run_and_agree_with_the_seed():
    """The benchmark functions on tiny settings (one timed run: figures are not checked here)."""
    from ssdzoo.bench.box_ops import bench_encode, bench_postprocess

    encode_result = bench_encode(batch=2, boxes_per_image=3, repeats=1, thread_counts=(1,))
    assert encode_result["labels_identical"] and encode_result["loc_max_abs_diff"] < 1e-5
    assert encode_result["timings"]["1_threads"]["speedup"] > 0
    post = bench_postprocess(cases=(("sparse", 0.002, 0, 0), ("clustered", 0.0, 2, 6)), batch=2, repeats=1,
                             thread_counts=(1,))
    assert all(case["identical"] for case in post["cases"].values())
