"""COCO evaluation: faster-coco-eval must give pycocotools' numbers on the same detections."""

import contextlib
import io

import numpy as np
import pytest
import torch

from ssdzoo.engine.evaluate import STAT_NAMES, coco_results, coco_stats, format_table
from ssdzoo.postprocess import Detections


def _ground_truth_and_results(seed=0, images=30, categories=(1, 3, 7)):
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in categories]}
    results = []
    for image_id in range(1, images + 1):
        width, height = int(rng.integers(200, 640)), int(rng.integers(200, 480))
        gt["images"].append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.jpg"})
        for _ in range(rng.integers(0, 6)):
            w, h = rng.uniform(8, width / 2), rng.uniform(8, height / 2)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            category = int(rng.choice(categories))
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": category,
                                      "bbox": [x, y, w, h], "area": w * h * rng.uniform(0.5, 1.0), "iscrowd": 0})
            if rng.random() < 0.8:  # a detection near it
                jitter = rng.normal(0, 0.1, 4) * [w, h, w, h]
                results.append({"image_id": image_id, "category_id": category,
                                "bbox": list(np.array([x, y, w, h]) + jitter), "score": float(rng.random())})
        for _ in range(rng.integers(0, 3)):  # false positives
            results.append({"image_id": image_id, "category_id": int(rng.choice(categories)),
                            "bbox": [float(rng.uniform(0, 100)), float(rng.uniform(0, 100)), 30.0, 40.0],
                            "score": float(rng.random())})
    return gt, results


@pytest.mark.parametrize("seed", [0, 1])
def test_faster_coco_eval_matches_pycocotools(seed):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, results = _ground_truth_and_results(seed)
    ours = coco_stats(gt, results)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        reference = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    assert 0.1 < ours["AP"] < 0.9
    np.testing.assert_allclose([ours[k] for k in STAT_NAMES], reference.stats[:12], atol=1e-9)


def test_results_rows_and_table():
    dets = Detections(torch.tensor([[10.0, 20.0, 50.0, 60.0]]), torch.tensor([0.9]), torch.tensor([2]))
    rows = coco_results([dets], [42], category_ids=[5, 9])
    assert rows == [{"image_id": 42, "category_id": 9, "bbox": [10.0, 20.0, 40.0, 40.0], "score": 0.9}]
    table = format_table({name: 0.5 for name in STAT_NAMES})
    assert table.count("\n") == 11 and "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.500" in table


def test_no_detections_gives_zeros():
    gt, _ = _ground_truth_and_results()
    assert coco_stats(gt, []) == {name: 0.0 for name in STAT_NAMES}
