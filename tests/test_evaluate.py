"""COCO evaluation: faster-coco-eval must give pycocotools' numbers on the same detections."""

import contextlib
import copy
import io

import numpy as np
import pytest
import torch
from PIL import Image

from ssdzoo.engine.evaluate import STAT_NAMES, coco_evaluation, coco_results, coco_stats, format_per_class, format_table
from ssdzoo.engine.pr_plot import plot_pr_curves
from ssdzoo.engine.voc_metric import voc_evaluation
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


def _pycocotools_stats(gt: dict, results: list[dict], cat_ids: list[int]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        reference = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "bbox")
        reference.params.catIds = cat_ids
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    return reference.stats


def test_per_class_ap_equals_cocoeval_of_that_class_alone():
    gt, results = _ground_truth_and_results(seed=2, categories=(0, 3, 7))  # a category id 0, as exports have
    gt["categories"].append({"id": 9, "name": "c9"})  # no ground truth, no detections
    evaluation = coco_evaluation(gt, results)
    assert evaluation.class_names == ["c0", "c3", "c7", "c9"]
    assert evaluation.precision.shape == (10, 101, 4)
    for category in (0, 3, 7):
        alone = _pycocotools_stats(gt, results, [category])
        row = evaluation.per_class[f"c{category}"]
        assert row["AP"] == pytest.approx(alone[0], abs=1e-9) and row["AP50"] == pytest.approx(alone[1], abs=1e-9)
        assert row["boxes"] == sum(a["category_id"] == category for a in gt["annotations"])
    assert evaluation.per_class["c9"]["AP"] is None and evaluation.per_class["c9"]["boxes"] == 0
    table = format_per_class(evaluation.per_class)
    assert table.splitlines()[4].split() == ["c9", "0", "0", "-", "-"]


def test_pr_plot_is_a_png(tmp_path):
    gt, results = _ground_truth_and_results(seed=3)
    path = plot_pr_curves(coco_evaluation(gt, results), tmp_path / "pr.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 600  # four panels: all classes and three
    assert [p.name for p in tmp_path.iterdir()] == ["pr.png"]


def _voc_case():
    """Class 1: box A (image 1), difficult box D (image 1), box B (image 2); class 2: one box, no
    detection; class 3: no ground truth."""
    gt = {"images": [{"id": 1}, {"id": 2}],
          "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}, {"id": 3, "name": "three"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
              {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "iscrowd": 1, "difficult": 1},
              {"id": 3, "image_id": 2, "category_id": 1, "bbox": [20, 20, 10, 10], "iscrowd": 0},
              {"id": 4, "image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5], "iscrowd": 0}]}
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},  # A: true positive
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 9], "score": 0.8},  # D: ignored
        {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.7},  # A again: false positive
        {"image_id": 2, "category_id": 1, "bbox": [20, 21, 10, 10], "score": 0.65},  # B: true positive
        {"image_id": 2, "category_id": 1, "bbox": [70, 70, 5, 5], "score": 0.6},  # nothing: false positive
        {"image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.99},  # not an evaluated image
    ]
    return gt, results


def test_voc_metric_by_hand():
    gt, results = _voc_case()
    voc = voc_evaluation(gt, results)
    # class one, in score order: TP, (ignored), FP, TP, FP of 2 boxes -> recall .5 .5 1 1, precision 1 .5 2/3 .5
    assert voc.per_class["one"]["voc10_AP50"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert voc.per_class["one"]["voc07_AP50"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    assert voc.per_class["one"]["ground_truth"] == 2  # the difficult box is not counted
    assert voc.per_class["two"]["voc10_AP50"] == 0.0 and voc.per_class["three"]["voc10_AP50"] is None
    assert voc.map10 == pytest.approx((0.5 + 1 / 3) / 2) and voc.map07 == pytest.approx((6 + 10 / 3) / 22)
    no_difficult = copy.deepcopy(gt)
    for ann in no_difficult["annotations"]:
        ann.pop("difficult", None)
        ann["iscrowd"] = 0
    # counted as an ordinary box, D is found by the 0.8 detection: TP TP FP TP FP of 3 boxes
    plain = voc_evaluation(no_difficult, results).per_class["one"]
    assert plain["ground_truth"] == 3 and plain["voc10_AP50"] == pytest.approx((1 + 1 + 0.75) / 3)


ID_SCHEMES = {"from 0": lambda k: k, "from 1": lambda k: k + 1, "with gaps": lambda k: 7 * k + 3,
              "large": lambda k: 2**40 + k}


def test_any_annotation_id_scheme_gives_the_same_ap_and_nothing_is_renumbered():
    """COCOeval reads annotation id 0 as "unmatched": an export numbered from 0 (Roboflow's) must
    still score its own ground truth as perfect, and every scheme must give pycocotools' numbers
    for the file numbered from 1."""
    gt, results = _ground_truth_and_results(seed=2)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 0.9}
               for a in gt["annotations"]]
    reference = coco_stats(gt, results)
    for scheme, number in ID_SCHEMES.items():
        renumbered = copy.deepcopy(gt)
        for k, ann in enumerate(renumbered["annotations"]):
            ann["id"] = number(k)
        seen = copy.deepcopy(renumbered)
        rows = copy.deepcopy(results)
        assert coco_stats(renumbered, rows) == reference, scheme
        assert renumbered == seen and rows == results, scheme  # the caller's ids are left as they are
        exact = coco_stats(renumbered, perfect)
        assert exact["AP"] == exact["AP50"] == 1.0, (scheme, exact)
