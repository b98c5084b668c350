"""Detections -> COCO results -> COCOeval's 12 numbers (faster-coco-eval, pycocotools-exact)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import torch
from tqdm import tqdm

from ..anchors import default_boxes
from ..atomic import write_json
from ..boxes import xyxy_to_xywh
from ..postprocess import Detections, postprocess
from ..targets import decode

if TYPE_CHECKING:
    from ..config import Config

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


def coco_stats(ground_truth: dict, results: list[dict], image_ids: Optional[Sequence[int]] = None) -> dict[str, float]:
    """COCOeval (bbox) over ``image_ids`` (all ground-truth images by default): the 12 numbers."""
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):  # faster-coco-eval prints its own progress
        gt = COCO(ground_truth)
        if not results:
            return {name: 0.0 for name in STAT_NAMES}
        evaluator = COCOeval_faster(gt, gt.loadRes(results), "bbox", print_function=lambda *a: None)
        evaluator.params.imgIds = sorted(image_ids if image_ids is not None else gt.getImgIds())
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats[:12])}


def write_metrics_json(stats: dict[str, float], path: str | Path, **extra) -> Path:
    """The 12 numbers (0 to 1; COCOeval's -1, no ground truth of that size, as null) and
    ``extra`` as one JSON object, written atomically."""
    path = Path(path)
    values = {name: (value if value >= 0 else None) for name, value in stats.items()}
    return write_json(path, {**values, **extra}, indent=2)


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
    """Run ``model`` over an eval loader: per-image Detections (pixels) and image ids."""
    anchors_cxcywh = default_boxes(cfg).to(device)
    was_training = model.training
    model.eval()
    detections, image_ids = [], []
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
        loc, logits = model(batch.images.to(device, non_blocking=True))
        boxes_xyxy = decode(loc.float(), anchors_cxcywh, cfg)
        detections += [Detections(*(t.cpu() for t in d)) for d in
                       postprocess(boxes_xyxy, logits.float().sigmoid(), cfg, batch.image_hw.to(device))]
        image_ids += batch.image_ids.tolist()
    model.train(was_training)
    return detections, image_ids


def evaluate(model: torch.nn.Module, dataset, cfg: "Config", *, device: torch.device,
             progress: bool = True) -> dict[str, float]:
    """COCO mAP of ``model`` on an eval dataset from ``ssdzoo.load_dataset(..., train=False)``."""
    from ..data import make_loader

    loader = make_loader(dataset, cfg, train=False)
    detections, image_ids = detect(model, loader, cfg, device, progress)
    category_ids = [c["id"] for c in dataset.categories]
    return coco_stats(dataset.coco_ground_truth(), coco_results(detections, image_ids, category_ids), image_ids)


def evaluate_predictor(predictor, dataset, cfg: "Config", *, progress: bool = True) -> dict[str, float]:
    """COCO mAP of an ``ssdzoo.inference.Predictor`` (e.g. an .onnx graph, float or int8, in
    onnxruntime) on an eval dataset, through the same loader and preprocessing as ``evaluate``."""
    from ..data import make_loader

    detections, image_ids = [], []
    for batch in tqdm(make_loader(dataset, cfg, train=False), desc="eval", leave=False, disable=not progress):
        detections += predictor.predict_batch(batch.images, batch.image_hw)
        image_ids += batch.image_ids.tolist()
    category_ids = [c["id"] for c in dataset.categories]
    return coco_stats(dataset.coco_ground_truth(), coco_results(detections, image_ids, category_ids), image_ids)
