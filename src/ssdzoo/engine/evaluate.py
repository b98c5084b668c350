"""Detections -> COCO results -> COCOeval's 12 numbers (faster-coco-eval, pycocotools-exact),
per-class AP / AP50 from COCOeval's precision array, and optionally VOC's AP (``voc_metric``)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, NamedTuple, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..anchors import default_boxes
from ..atomic import write_json
from ..boxes import xyxy_to_xywh
from ..data.device_pipeline import batch_to_device
from ..postprocess import Detections, decode_outputs, postprocess

if TYPE_CHECKING:
    from ..config import Config
    from .voc_metric import VocResult

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_TABLE_ROWS = (  # COCOeval.summarize()'s wording, one line per number
    ("Average Precision", "0.50:0.95", "all", 100), ("Average Precision", "0.50", "all", 100),
    ("Average Precision", "0.75", "all", 100), ("Average Precision", "0.50:0.95", "small", 100),
    ("Average Precision", "0.50:0.95", "medium", 100), ("Average Precision", "0.50:0.95", "large", 100),
    ("Average Recall", "0.50:0.95", "all", 1), ("Average Recall", "0.50:0.95", "all", 10),
    ("Average Recall", "0.50:0.95", "all", 100), ("Average Recall", "0.50:0.95", "small", 100),
    ("Average Recall", "0.50:0.95", "medium", 100), ("Average Recall", "0.50:0.95", "large", 100),
)


def coco_results(detections: Sequence[Detections], image_ids: Iterable[int],
                 category_ids: Optional[Sequence[int]] = None,
                 file_names: Optional[Sequence[str]] = None) -> list[dict]:
    """COCO results json rows (bbox: x, y, w, h in pixels). ``category_ids[label - 1]`` is the
    dataset's id of label 1..K (default: the label itself); ``file_names`` add one per image."""
    rows = []
    for k, (dets, image_id) in enumerate(zip(detections, image_ids)):
        file_name = {"file_name": file_names[k]} if file_names is not None else {}
        coco_bbox_xywh = xyxy_to_xywh(dets.boxes.float()).tolist()
        for bbox, score, label in zip(coco_bbox_xywh, dets.scores.tolist(), dets.labels.tolist()):
            category_id = category_ids[label - 1] if category_ids is not None else label
            rows.append({"image_id": int(image_id), **file_name, "category_id": int(category_id),
                         "bbox": [round(v, 3) for v in bbox], "score": round(score, 5)})
    return rows


class CocoEvaluation(NamedTuple):
    """COCOeval's numbers for a set of detections, overall and per class."""

    stats: dict[str, float]  # the 12 numbers
    class_names: list[str]  # in ascending category id: the precision array's class axis
    per_class: dict[str, dict]  # name -> {"AP", "AP50" (None: no ground truth), "images", "boxes"}
    recall: np.ndarray  # (R,) COCOeval's recall thresholds, 0 to 1 in steps of 0.01
    precision: np.ndarray  # (T, R, K) interpolated precision at IoU 0.5:0.05:0.95, all areas,
                           # 100 detections; -1 where a class has no ground truth


def coco_evaluation(ground_truth: dict, results: list[dict],
                    image_ids: Optional[Sequence[int]] = None) -> CocoEvaluation:
    """COCOeval (bbox) over ``image_ids`` (all ground-truth images by default)."""
    from faster_coco_eval import COCO, COCOeval_faster

    categories = sorted(ground_truth["categories"], key=lambda c: c["id"])
    names = [c["name"] for c in categories]
    with contextlib.redirect_stdout(io.StringIO()):  # faster-coco-eval prints its own progress
        gt = COCO(_numbered_from_one(ground_truth))
        evaluated = sorted(image_ids if image_ids is not None else gt.getImgIds())
        counts = _ground_truth_counts(ground_truth, categories, set(evaluated))
        recall = np.linspace(0.0, 1.0, 101)
        if not results:
            precision = np.where(np.array([counts[n]["boxes"] > 0 for n in names]), 0.0, -1.0)
            precision = np.broadcast_to(precision, (10, 101, len(names))).copy()
            stats = {name: 0.0 for name in STAT_NAMES}
        else:
            evaluator = COCOeval_faster(gt, gt.loadRes(results), "bbox", print_function=lambda *a: None)
            evaluator.params.imgIds = evaluated
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            stats = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats[:12])}
            recall = np.asarray(evaluator.params.recThrs, dtype=np.float64)
            precision = np.asarray(evaluator.eval["precision"])[:, :, :, 0, -1]  # area all, maxDets 100
    per_class = {}
    for k, name in enumerate(names):
        p = precision[:, :, k]
        ap = float(p[p > -1].mean()) if (p > -1).any() else None
        ap50 = float(p[0][p[0] > -1].mean()) if (p[0] > -1).any() else None
        per_class[name] = {"AP": ap, "AP50": ap50, **counts[name]}
    return CocoEvaluation(stats, names, per_class, recall, precision)


def _numbered_from_one(ground_truth: dict) -> dict:
    """``ground_truth`` with its annotations numbered 1..N in their order, for COCOeval alone.

    COCOeval records a detection's match by the ground truth's annotation id and reads id 0 as
    "unmatched": every detection of an annotation numbered 0 (Roboflow's exports start there)
    would count as a false positive. Duplicate ids would merge annotations in its index. The ids
    appear in nothing COCOeval reports, so its numbers are those of the user's file, whatever
    its numbering; the caller's dict (and every image and category id) is left as it is."""
    annotations = [{**ann, "id": k} for k, ann in enumerate(ground_truth["annotations"], start=1)]
    return {**ground_truth, "annotations": annotations}


def _ground_truth_counts(ground_truth: dict, categories: list[dict], image_ids: set) -> dict[str, dict]:
    """Per class: images holding it and its boxes COCOeval counts (not crowd or difficult)."""
    name_of = {c["id"]: c["name"] for c in categories}
    images, boxes = {n: set() for n in name_of.values()}, dict.fromkeys(name_of.values(), 0)
    for ann in ground_truth["annotations"]:
        name = name_of.get(ann["category_id"])
        if name is None or ann["image_id"] not in image_ids or ann.get("iscrowd"):
            continue
        images[name].add(ann["image_id"])
        boxes[name] += 1
    return {n: {"images": len(images[n]), "boxes": boxes[n]} for n in name_of.values()}


def coco_stats(ground_truth: dict, results: list[dict], image_ids: Optional[Sequence[int]] = None) -> dict[str, float]:
    """COCOeval (bbox) over ``image_ids`` (all ground-truth images by default): the 12 numbers."""
    return coco_evaluation(ground_truth, results, image_ids).stats


def write_metrics_json(stats: dict[str, float], path: str | Path, **extra) -> Path:
    """The 12 numbers (0 to 1; COCOeval's -1, no ground truth of that size, as null) and
    ``extra`` as one JSON object, written atomically."""
    path = Path(path)
    values = {name: (value if value >= 0 else None) for name, value in stats.items()}
    return write_json(path, {**values, **extra}, indent=2)


def format_per_class(per_class: dict[str, dict], voc: Optional[dict] = None) -> str:
    """One line per class: images and boxes of the ground truth, AP, AP50 (and VOC's APs)."""
    width = max(12, *(len(n) for n in per_class)) if per_class else 12
    header = f" {'class':<{width}} {'images':>7} {'boxes':>7} {'AP':>7} {'AP50':>7}"
    if voc:
        header += f" {'VOC07':>7} {'VOC10+':>7}"
    lines = [header]

    def number(value: Optional[float]) -> str:
        return f"{value:7.3f}" if value is not None else f"{'-':>7}"

    for name, row in per_class.items():
        line = f" {name:<{width}} {row['images']:>7} {row['boxes']:>7} {number(row['AP'])} {number(row['AP50'])}"
        if voc:
            line += f" {number(voc[name]['voc07_AP50'])} {number(voc[name]['voc10_AP50'])}"
        lines.append(line)
    return "\n".join(lines)


def format_table(stats: dict[str, float]) -> str:
    """The familiar COCOeval summary, one line per number."""
    lines = []
    for (kind, iou, area, dets), name in zip(_TABLE_ROWS, STAT_NAMES):
        short = "(AP)" if kind.endswith("Precision") else "(AR)"
        lines.append(f" {kind:<18} {short} @[ IoU={iou:<9} | area={area:>6} | maxDets={dets:>3} ] = {stats[name]:0.3f}")
    return "\n".join(lines)


@torch.inference_mode()
def detect(model: torch.nn.Module, loader, cfg: "Config", device: torch.device,
           progress: bool = True) -> tuple[list[Detections], list[int]]:
    """Run ``model`` over an eval loader (``make_backend_loader(..., train=False)``, either backend):
    per-image Detections (pixels) and image ids."""
    anchors_cxcywh = default_boxes(cfg).to(device)
    was_training = model.training
    model.eval()
    detections, image_ids = [], []
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
        batch = batch_to_device(batch, device, cfg, strict=True)  # the device backend decodes and resizes here
        loc, logits = model(batch.images)
        boxes_xyxy, probs = decode_outputs(loc, logits, anchors_cxcywh, cfg)
        detections += postprocess(boxes_xyxy, probs, cfg, batch.image_hw.to(device), device="cpu")
        image_ids += batch.image_ids.tolist()
    model.train(was_training)
    return detections, image_ids


def evaluate(model: torch.nn.Module, dataset, cfg: "Config", *, device: torch.device,
             progress: bool = True) -> dict[str, float]:
    """COCO mAP of ``model`` on an eval dataset from ``ssdzoo.load_dataset(..., train=False)``."""
    return evaluate_report(model, dataset, cfg, device=device, progress=progress).coco.stats


class EvalReport(NamedTuple):
    """Everything ``ssdzoo eval`` shows: COCOeval overall and per class, and VOC's AP if asked."""

    coco: CocoEvaluation
    voc: Optional["VocResult"]  # None unless asked for

    def to_json(self) -> dict:
        """The JSON's extra keys: per_class {name: {AP, AP50[, voc07_AP50, voc10_AP50]}}, VOC's means."""
        per_class = {}
        for name, row in self.coco.per_class.items():
            per_class[name] = {"AP": row["AP"], "AP50": row["AP50"]}
            if self.voc is not None:
                per_class[name].update({k: self.voc.per_class[name][k] for k in ("voc07_AP50", "voc10_AP50")})
        extra = {"per_class": per_class}
        if self.voc is not None:
            extra.update({"voc07_mAP50": self.voc.map07, "voc10_mAP50": self.voc.map10})
        return extra


def report_from_detections(dataset, detections: Sequence[Detections], image_ids: Sequence[int], *,
                           voc: bool = False) -> EvalReport:
    """Score per-image Detections (pixels) against ``dataset``'s ground truth."""
    category_ids = [c["id"] for c in dataset.categories]
    ground_truth = dataset.coco_ground_truth()
    results = coco_results(detections, image_ids, category_ids)
    coco = coco_evaluation(ground_truth, results, image_ids)
    voc_result = None
    if voc:
        from .voc_metric import voc_evaluation

        voc_result = voc_evaluation(ground_truth, results)
    return EvalReport(coco, voc_result)


def evaluate_report(model: torch.nn.Module, dataset, cfg: "Config", *, device: torch.device,
                    progress: bool = True, voc: bool = False) -> EvalReport:
    """``evaluate`` with the per-class numbers, and VOC's AP with ``voc``."""
    from ..data import make_backend_loader, resolve_data_backend

    loader = make_backend_loader(dataset, cfg, train=False, backend=resolve_data_backend(cfg, device))
    detections, image_ids = detect(model, loader, cfg, device, progress)
    return report_from_detections(dataset, detections, image_ids, voc=voc)


def evaluate_predictor(predictor, dataset, cfg: "Config", *, progress: bool = True,
                       voc: bool = False) -> EvalReport:
    """``evaluate_report`` for an ``ssdzoo.inference.Predictor`` (e.g. an .onnx graph, float or
    int8, in onnxruntime), through the same loader and preprocessing as ``evaluate``."""
    from ..data import make_loader

    detections, image_ids = [], []
    for batch in tqdm(make_loader(dataset, cfg, train=False), desc="eval", leave=False, disable=not progress):
        detections += predictor.predict_batch(batch.images, batch.image_hw)
        image_ids += batch.image_ids.tolist()
    return report_from_detections(dataset, detections, image_ids, voc=voc)
