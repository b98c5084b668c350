"""Detector + decode (+ the seed's NMS) -> an ONNX graph, checked with onnxruntime.

Two graph layouts, both with a dynamic batch dimension and the config's fixed input size:

- plain: ``images`` (N, 3, H, W) float32, normalized as ``ssdzoo.inference.preprocess`` does
  -> ``boxes`` (N, A, 4) xyxy normalized to [0, 1], ``probs`` (N, A, C) class scores
  (sigmoid, or softmax with ``score_activation: softmax``; column 0 = background). The
  seed's NMS is then run by the caller (``ssdzoo.postprocess``).
- with NMS: ``images`` and ``image_hw`` (N, 2) float32, each original image's (height, width)
  -> a flat list of D detections over the whole batch: ``batch_index`` (D,) int64,
  ``boxes`` (D, 4) float32 xyxy in pixels of the original image, ``scores`` (D,) float32,
  ``labels`` (D,) int64 in 1..C-1. Rows come grouped by image; within an image by label, scores
  descending (onnxruntime's order; the ONNX spec does not promise one), or with
  ``max_detections`` by score descending. The rule is ``ssdzoo.postprocess``'s, all its keys
  included (``clip_boxes``, ``pre_nms_top_k``, per class ``min_score``, greedy NMS at
  ``nms_threshold`` in the ``nms_plus_one`` convention, ``max_boxes``, ``max_detections``);
  the graph takes ``image_hw`` because the seed measures IoU on pixel boxes.

The graph is ``ssdzoo.postprocess.graph_detections``: the NMS is ONNX's own NonMaxSuppression
operator, whose per-class, per-image semantics are the seed's. In PyTorch it is a custom op
(``ssdzoo::nms_per_class``, run by ssdzoo's own NMS), which the exporter translates into that
one ONNX node.

Both layouts carry metadata (``ssdzoo.layout``, ``image_size``, ``mean``, ``std``, ``classes``,
``num_classes``, ``min_score``, ``nms_threshold``, ``max_boxes``, ``nms_plus_one`` and
``postprocess.POSTPROCESS_KEYS``) that ``Predictor`` checks
against the config it is given, and the whole resolved config (``ssdzoo.config``), which
``ssdzoo predict`` uses when no config is given.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn

from .anchors import default_boxes
from .atomic import atomic_path
from .inference import Predictor, preprocess
from .postprocess import (POSTPROCESS_KEYS, Detections, decode_outputs, graph_detections, nms_per_class_onnx,
                          nms_settings)

if TYPE_CHECKING:
    from .config import Config
    from .model import Detector

PLAIN_OUTPUTS = ("boxes", "probs")
NMS_OUTPUTS = ("batch_index", "boxes", "scores", "labels")
MIN_OPSET = 18  # the oldest opset torch.onnx's torch.export-based exporter translates to


class DecodedDetector(nn.Module):
    """images (N, 3, H, W) normalized -> boxes (N, A, 4) xyxy normalized, probs (N, A, C)."""

    def __init__(self, model: "Detector", cfg: "Config"):
        super().__init__()
        self.model = model
        self.register_buffer("anchors_cxcywh", default_boxes(cfg).float(), persistent=False)
        self.cfg = cfg

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        loc, logits = self.model(images)
        return decode_outputs(loc, logits, self.anchors_cxcywh, self.cfg)


class DetectorWithNMS(nn.Module):
    """(images, image_hw (N, 2)) -> flat detections: batch_index (D,), boxes (D, 4) xyxy pixels,
    scores (D,), labels (D,); ``ssdzoo.postprocess``'s rule, as its ``graph_detections``."""

    def __init__(self, model: "Detector", cfg: "Config"):
        super().__init__()
        self.decoded = DecodedDetector(model, cfg)
        self.settings = nms_settings(cfg)

    def forward(self, images: Tensor, image_hw: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        boxes_xyxy, probs = self.decoded(images)
        return graph_detections(boxes_xyxy, probs, image_hw, **self.settings)


def export_onnx(model: "Detector", cfg: "Config", path: str | Path, *, nms: bool = False,
                opset: Optional[int] = None) -> Path:
    """Write ``model`` as an ONNX graph (layouts in the module docstring) to ``path``.

    Uses torch.onnx's torch.export-based exporter. The file is written to a temporary name
    beside ``path`` and renamed, so a failed export leaves no partial file. ``model`` is
    copied to the CPU in eval mode; the caller's module is left as it was.
    """
    import onnx_ir as ir

    if opset is not None and opset < MIN_OPSET:
        raise ValueError(f"opset {opset}: torch.onnx's exporter writes opset {MIN_OPSET} or later")
    path = Path(path)
    model = copy.deepcopy(model).cpu().eval()
    height, width = cfg.image_size
    images = torch.zeros(2, 3, height, width)  # batch 2: a batch of 1 would be specialized
    batch = torch.export.Dim("batch", min=1, max=65536)
    if nms:
        wrapper: nn.Module = DetectorWithNMS(model, cfg)
        args: tuple = (images, torch.tensor([[height, width]] * 2, dtype=torch.float32))
        input_names, output_names = ["images", "image_hw"], list(NMS_OUTPUTS)
        dynamic_shapes: dict = {"images": {0: batch}, "image_hw": {0: batch}}
    else:
        wrapper, args = DecodedDetector(model, cfg), (images,)
        input_names, output_names = ["images"], list(PLAIN_OUTPUTS)
        dynamic_shapes = {"images": {0: batch}}
    with warnings.catch_warnings(), _quiet_loggers("onnxscript", "onnx_ir"):
        # both inputs share the one batch Dim; the exporter notes that it keeps one name for it
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
        program = torch.onnx.export(
            wrapper.eval(), args, dynamo=True, input_names=input_names, output_names=output_names,
            dynamic_shapes=dynamic_shapes, opset_version=opset, external_data=False, verbose=False,
            custom_translation_table={torch.ops.ssdzoo.nms_per_class.default: nms_per_class_onnx})
    if nms:  # the data-dependent first dimension of every output is the detection count
        for output in program.model.graph.outputs:
            output.shape = ir.Shape(["detections", *output.shape.dims[1:]])
    program.model.metadata_props.update({
        "ssdzoo.layout": "nms" if nms else "plain",
        "ssdzoo.image_size": json.dumps([height, width]),
        "ssdzoo.num_classes": str(cfg.num_classes),
        "ssdzoo.mean": json.dumps(list(cfg.mean)),
        "ssdzoo.std": json.dumps(list(cfg.std)),
        "ssdzoo.classes": json.dumps(list(cfg.classes)),
        "ssdzoo.min_score": str(cfg.min_score),
        "ssdzoo.nms_threshold": str(cfg.nms_threshold),
        "ssdzoo.max_boxes": str(cfg.max_boxes),
        "ssdzoo.nms_plus_one": json.dumps(cfg.nms_plus_one),
        **{f"ssdzoo.{key}": json.dumps(getattr(cfg, key)) for key in POSTPROCESS_KEYS},
        "ssdzoo.image_resize": cfg.image_resize,
        "ssdzoo.config": json.dumps(cfg.to_dict()),  # the whole resolved config: predict needs no recipe
    })
    with atomic_path(path) as tmp:
        program.save(tmp, external_data=False)
    return path


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """The graph optimizer logs every rewrite at INFO; keep only its warnings while exporting."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def onnx_opset(path: str | Path) -> int:
    """The default-domain opset version of an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


class ExportCheck(NamedTuple):
    """onnxruntime against PyTorch on the same preprocessed images."""

    batch_sizes: tuple[int, ...]  # the batch sizes run through the one graph
    max_box_diff: Optional[float]  # plain graphs: normalized boxes; None for NMS graphs
    max_prob_diff: Optional[float]
    num_torch: int  # detections from PyTorch + ssdzoo.postprocess
    num_onnx: int  # detections from the graph (+ ssdzoo.postprocess for plain graphs)
    num_agree: int  # PyTorch detections the graph also has: same image, label, box within tol
    max_det_box_diff: float  # pixels, over agreeing detections
    max_det_score_diff: float

    def agrees(self, *, tol: float = 1e-4, min_agreement: float = 0.99) -> bool:
        """Outputs within ``tol`` and at least ``min_agreement`` of the detections shared.

        A detection may flip where two boxes sit exactly at the NMS threshold or tie on score,
        so agreement is a fraction, not all-or-nothing.
        """
        diffs = [d for d in (self.max_box_diff, self.max_prob_diff, self.max_det_score_diff) if d is not None]
        shared = min(self.num_agree / max(self.num_torch, 1), self.num_agree / max(self.num_onnx, 1))
        no_detections = self.num_torch == 0 == self.num_onnx
        return all(d <= tol for d in diffs) and (no_detections or shared >= min_agreement)


def check_onnx(path: str | Path, model: "Detector", cfg: "Config",
               images: Optional[Sequence[np.ndarray]] = None, *, box_tol_px: float = 1e-2) -> ExportCheck:
    """Run ``images`` (default: ``synthetic_images()``) through PyTorch and the graph at path,
    all together and the first alone (two batch sizes, one graph), and compare."""
    images = list(synthetic_images() if images is None else images)
    torch_predictor = Predictor(cfg, copy.deepcopy(model).cpu())
    onnx_predictor = Predictor.from_weights(cfg, path)
    max_box = max_prob = 0.0
    dets_torch: list[Detections] = []
    dets_onnx: list[Detections] = []
    batch_sizes = (len(images), 1) if len(images) > 1 else (1,)
    for n in batch_sizes:
        batch, image_hw = preprocess(images[:n], cfg)
        if not onnx_predictor.network.has_nms:
            with torch.inference_mode():
                boxes_t, probs_t = torch_predictor.network(batch)
            boxes_o, probs_o = onnx_predictor.network(batch)
            max_box = max(max_box, (boxes_t - boxes_o).abs().max().item())
            max_prob = max(max_prob, (probs_t - probs_o).abs().max().item())
        dets_torch += torch_predictor.predict_batch(batch, image_hw)
        dets_onnx += onnx_predictor.predict_batch(batch, image_hw)
    agree, box_diff, score_diff = compare_detections(dets_torch, dets_onnx, box_tol_px=box_tol_px)
    has_nms = onnx_predictor.network.has_nms
    return ExportCheck(batch_sizes, None if has_nms else max_box, None if has_nms else max_prob,
                       sum(len(d.scores) for d in dets_torch), sum(len(d.scores) for d in dets_onnx),
                       agree, box_diff, score_diff)


def compare_detections(reference: Sequence[Detections], other: Sequence[Detections], *,
                       box_tol_px: float) -> tuple[int, float, float]:
    """(reference detections found in ``other`` with the same image and label and every box
    coordinate within box_tol_px, their largest box difference, their largest score difference)."""
    agree, max_box, max_score = 0, 0.0, 0.0
    for ref, oth in zip(reference, other):
        if len(ref.scores) == 0 or len(oth.scores) == 0:
            continue
        box_diff = (ref.boxes[:, None, :] - oth.boxes[None, :, :]).abs().amax(dim=-1)  # (R, O)
        box_diff = box_diff.masked_fill(ref.labels[:, None] != oth.labels[None, :], float("inf"))
        best_diff, best = box_diff.min(dim=1)
        found = best_diff <= box_tol_px
        agree += int(found.sum())
        if found.any():
            max_box = max(max_box, best_diff[found].max().item())
            max_score = max(max_score, (ref.scores[found] - oth.scores[best[found]]).abs().max().item())
    return agree, max_box, max_score


def synthetic_images(
    *, seed: int = 0, sizes_hw: Sequence[tuple[int, int]] = ((480, 640), (375, 500), (96, 128)),
) -> list[np.ndarray]:
    """Deterministic test pictures: a smooth gradient, noise and a few filled shapes in random
    colours, (H, W, 3) uint8, of several sizes and aspect ratios."""
    rng = np.random.default_rng(seed)
    images = []
    for height, width in sizes_hw:
        ys, xs = np.mgrid[0:height, 0:width]
        base = np.stack([xs * 255 / width, ys * 255 / height, np.full_like(xs, 128.0)], axis=-1)
        noisy = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        picture = Image.fromarray(noisy)
        draw = ImageDraw.Draw(picture)
        for _ in range(4):
            x0, y0 = rng.integers(0, width * 3 // 4), rng.integers(0, height * 3 // 4)
            x1 = x0 + rng.integers(width // 8, width // 3)
            y1 = y0 + rng.integers(height // 8, height // 3)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
        images.append(np.asarray(picture))
    return images
