"""Target encoding and post-processing: ssdzoo against the seed's numpy algorithms, in one process.

Each benchmark builds seeded random inputs, checks that both sides give the same result, then
times them interleaved (seed, ssdzoo, seed, ...) after a warm-up, with one torch thread and
with the default count, and reports medians. The machine's other load moves both alike, so
the ratio is the figure to quote.

Before timing, the process allocates and frees one 16 MiB block, as every training or
evaluation process does many times over: glibc's malloc then raises its dynamic thresholds
and keeps freed multi-megabyte blocks for reuse. A fresh process instead hands them back to
the kernel after each call and page-faults them in again on the next, which on a VM costs
ssdzoo's batched temporaries (a few MiB each) more than the arithmetic; the seed's arrays are
small and unaffected. ``warm_allocator=False`` measures that cold state.
"""

from __future__ import annotations

import platform
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from ..anchors import default_boxes
from ..boxes import cxcywh_to_xyxy
from ..config import load_config
from ..postprocess import Detections, postprocess
from ..targets import encode
from .seed_reference import seed_encode, seed_postprocess
from .timing import interleaved, torch_threads

# (name, share of the (anchor, class) scores over min_score, objects, boxes per object): the
# three random ones span the golden cases (~350, ~55 and ~4 candidates per class); "clustered"
# looks like a trained model: a few objects, each found by many overlapping boxes of its class.
POSTPROCESS_CASES = (("dense", 0.18, 0, 0), ("medium", 0.028, 0, 0), ("sparse", 0.002, 0, 0),
                     ("clustered", 0.0, 8, 24))


def bench_encode(*, recipe: str = "ssd_mobilenetv2", batch: int = 64, boxes_per_image: int = 7,
                 repeats: int = 15, seed: int = 0, thread_counts: tuple[Optional[int], ...] = (1, None),
                 warm_allocator: bool = True) -> dict:
    """Time ``encode`` on a batch against the seed's loop over its images; ms per batch."""
    if warm_allocator:
        _warm_allocator()
    cfg = load_config(recipe)
    anchors_cxcywh = default_boxes(cfg)
    generator = torch.Generator().manual_seed(seed)
    gt_boxes_xyxy, gt_labels = random_ground_truth(batch, boxes_per_image, num_classes=cfg.num_classes,
                                                   generator=generator)
    seed_args = _seed_encode_args(anchors_cxcywh, gt_boxes_xyxy, gt_labels, cfg.match_threshold, cfg.prior_scaling)

    def run_seed() -> tuple[np.ndarray, np.ndarray]:
        results = [seed_encode(*args, **kwargs) for args, kwargs in seed_args]
        loc_yx = np.stack([loc for loc, _ in results])
        return loc_yx[..., [1, 0, 3, 2]], np.stack([labels for _, labels in results])

    def run_ssdzoo() -> tuple[Tensor, Tensor]:
        return encode(gt_boxes_xyxy, gt_labels, anchors_cxcywh, cfg)

    seed_loc, seed_labels = run_seed()
    loc, labels = run_ssdzoo()
    result = {
        "recipe": recipe, "anchors": len(anchors_cxcywh), "batch": batch, "boxes_per_image": boxes_per_image,
        "warm_allocator": warm_allocator,
        "labels_identical": bool(np.array_equal(labels.numpy(), seed_labels)),
        "positive_anchors": int((labels > 0).sum()),
        # the seed's float32 log is numpy's, ssdzoo's is torch's: they may differ in the last bit
        "loc_max_abs_diff": float(np.abs(loc.numpy() - seed_loc).max()),
    }
    result["timings"] = _time_pair(run_seed, run_ssdzoo, repeats=repeats, thread_counts=thread_counts,
                                   per=batch, unit="image")
    return result


def bench_postprocess(*, recipe: str = "ssd_mobilenetv2", cases: tuple = POSTPROCESS_CASES, batch: int = 1,
                      repeats: int = 7, seed: int = 0, thread_counts: tuple[Optional[int], ...] = (1, None),
                      warm_allocator: bool = True) -> dict:
    """Time ``postprocess`` on a batch (one call) against the seed's per-class numpy NMS (one
    call per image), per case; figures per image too."""
    if warm_allocator:
        _warm_allocator()
    cfg = load_config(recipe)
    num_anchors = len(default_boxes(cfg))
    image_hw = torch.tensor([[480, 640], [375, 500], [640, 427], [300, 300]])[torch.arange(batch) % 4]
    results = {}
    for name, density, objects, boxes_per_object in cases:
        images = [random_predictions(num_anchors, cfg.num_classes, density=density, objects=objects,
                                     boxes_per_object=boxes_per_object,
                                     generator=torch.Generator().manual_seed(seed + i)) for i in range(batch)]
        boxes_xyxy, probs = torch.stack([b for b, _ in images]), torch.stack([p for _, p in images])
        seed_inputs = [(b[:, [1, 0, 3, 2]].numpy(), p.numpy(), tuple(hw.tolist())) for (b, p), hw in zip(images, image_hw)]

        def run_seed() -> list[np.ndarray]:
            return [seed_postprocess(b, p, hw, min_score=cfg.min_score, nms_threshold=cfg.nms_threshold,
                                     max_boxes=cfg.max_boxes) for b, p, hw in seed_inputs]

        def run_ssdzoo() -> list[Detections]:
            return postprocess(boxes_xyxy, probs, cfg, image_hw)

        seed_rows, detections = run_seed(), run_ssdzoo()
        results[name] = {
            "candidates_per_image": int((probs[..., 1:] > cfg.min_score).sum()) / batch,
            "detections_per_image": sum(len(rows) for rows in seed_rows) / batch,
            "identical": all(same_detections(d, rows) for d, rows in zip(detections, seed_rows)),
            "timings": _time_pair(run_seed, run_ssdzoo, repeats=repeats, thread_counts=thread_counts,
                                  per=batch, unit="image"),
        }
    return {"recipe": recipe, "anchors": num_anchors, "classes": cfg.num_classes - 1, "batch": batch,
            "warm_allocator": warm_allocator, "cases": results}


def machine() -> dict:
    """What the figures were measured on."""
    return {"cpu": platform.processor() or platform.machine(), "cores": torch.get_num_threads(),
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def random_ground_truth(batch: int, boxes_per_image: int, *, num_classes: int,
                        generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(batch, G, 4) normalized xyxy boxes 2-40% of a side, (batch, G) labels 1..num_classes-1."""
    size = 0.02 + 0.38 * torch.rand(batch, boxes_per_image, 2, generator=generator)
    corner = (1 - size) * torch.rand(batch, boxes_per_image, 2, generator=generator)
    labels = torch.randint(1, num_classes, (batch, boxes_per_image), generator=generator)
    return torch.cat([corner, corner + size], -1), labels


def random_predictions(num_anchors: int, num_classes: int, *, density: float, objects: int = 0,
                       boxes_per_object: int = 0, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(A, 4) decoded boxes (normalized xyxy) and (A, C) probabilities of one image.

    Random boxes 5-35% of a side, and each (anchor, class) probability over 0.1 with chance
    ``density`` (column 0, background, too). Then ``objects`` objects, each predicted by
    ``boxes_per_object`` anchors with jittered copies of one box and scores 0.3-0.99 for its
    class: heavy suppression, as from a trained model.
    """
    size = 0.05 + 0.3 * torch.rand(num_anchors, 2, generator=generator)
    corner = (1 - size) * torch.rand(num_anchors, 2, generator=generator)
    uniform = torch.rand(num_anchors, num_classes, generator=generator, dtype=torch.float64)
    # P(u ** exponent > 0.1) = density
    probs = (uniform ** (np.log(0.1) / np.log1p(-density)) if density > 0 else 0.1 * uniform).float()
    if objects:
        anchors = torch.randperm(num_anchors, generator=generator)[: objects * boxes_per_object]
        anchors = anchors.view(objects, boxes_per_object)
        jitter = 1 + 0.1 * torch.randn(objects, boxes_per_object, 2, generator=generator)
        shift = 0.02 * torch.randn(objects, boxes_per_object, 2, generator=generator)
        size[anchors] = (size[anchors[:, :1]] * jitter).clamp(0.02, 0.9)
        corner[anchors] = (corner[anchors[:, :1]] + shift).clamp(0.0, 0.98)
        classes = torch.randint(1, num_classes, (objects, 1), generator=generator)
        probs[anchors, classes] = 0.3 + 0.69 * torch.rand(objects, boxes_per_object, generator=generator)
    return torch.cat([corner, corner + size], -1).clamp(max=1.0), probs


def same_detections(detections: Detections, seed_rows: np.ndarray) -> bool:
    """Whether ssdzoo's detections are the seed's rows [class, x, y, w, h, score]: the same
    classes and scores exactly, boxes to float32 rounding of the seed's float64 pixels.

    Both lists are put in one order first (class, score descending, x, y): among equal scores
    the seed's order is numpy's unstable sort's, ssdzoo's is by anchor.
    """
    if len(detections.scores) != len(seed_rows):
        return False
    boxes = detections.boxes.double().cpu().numpy()
    ours = np.concatenate([detections.labels.cpu().numpy()[:, None], boxes[:, :2], boxes[:, 2:] - boxes[:, :2],
                           detections.scores.double().cpu().numpy()[:, None]], 1)
    ours, seed = (rows[np.lexsort((rows[:, 2], rows[:, 1], -rows[:, 5], rows[:, 0]))] for rows in (ours, seed_rows))
    return bool(np.array_equal(ours[:, [0, 5]], seed[:, [0, 5]])
                and np.allclose(ours[:, 1:5], seed[:, 1:5], rtol=0, atol=1e-3))


def _seed_encode_args(anchors_cxcywh: Tensor, gt_boxes_xyxy: Tensor, gt_labels: Tensor, threshold: float,
                      prior_scaling: tuple[float, float]) -> list[tuple[tuple, dict]]:
    """Per image, the seed's inputs: (y, x) order, float32 anchors rounded once from float64."""
    anchors_cyxhw = anchors_cxcywh.float().numpy()[:, [1, 0, 3, 2]]
    anchors_yxyx = cxcywh_to_xyxy(anchors_cxcywh.double()).float().numpy()[:, [1, 0, 3, 2]]
    kwargs = {"threshold": threshold, "prior_scaling": tuple(prior_scaling)}
    args = []
    for boxes_xyxy, labels in zip(gt_boxes_xyxy.numpy(), gt_labels.numpy()):
        real = labels > 0
        args.append(((boxes_xyxy[real][:, [1, 0, 3, 2]], labels[real], anchors_cyxhw, anchors_yxyx), kwargs))
    return args


def _time_pair(run_seed: Callable, run_ssdzoo: Callable, *, repeats: int, thread_counts: tuple[Optional[int], ...],
               per: int, unit: str) -> dict:
    """Median ms of each side, interleaved, for each torch thread count (None: the default)."""
    timings = {}
    for threads in thread_counts:
        with torch_threads(threads) as count:
            timed = interleaved({"seed": run_seed, "ssdzoo": run_ssdzoo}, rounds=repeats, calls_per_round=1, warmup=2)
        seed_ms, ssdzoo_ms = timed["seed"].median_ms, timed["ssdzoo"].median_ms
        timings[f"{count}_threads"] = {
            "seed_ms": round(seed_ms, 4), "ssdzoo_ms": round(ssdzoo_ms, 4),
            f"seed_ms_per_{unit}": round(seed_ms / per, 5), f"ssdzoo_ms_per_{unit}": round(ssdzoo_ms / per, 5),
            "speedup": round(seed_ms / ssdzoo_ms, 2)}
    return timings


def _warm_allocator() -> None:
    """Allocate and free a 16 MiB block (see the module docstring); a no-op beyond glibc."""
    torch.empty(16 << 20, dtype=torch.uint8)

