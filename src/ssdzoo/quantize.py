"""int8 ONNX: static quantization of an ``ssdzoo export`` graph with onnxruntime's tools.

    float graph --quant_pre_process--> BN folded, shapes inferred
               --calibration--> activation ranges over N images through ssdzoo's preprocessing
               --quantize_static--> QDQ graph: int8 weights per output channel, uint8 activations

The graph keeps its inputs, outputs and metadata (``ssdzoo.*``), so ``Predictor``, ``ssdzoo
predict`` and ``ssdzoo eval`` take it as they take the float file; ``ssdzoo.quantization`` says
how it was made.

What stays float (``FLOAT_PARTS``, default "post"): everything after the network (the box
decoding, sigmoid, reshapes, concatenations and NMS). Quantizing those too ("none") cost the
demo checkpoint 0.02 AP (0.03 AP75: 8-bit decoded boxes move corners by up to 1/255 of the
image); keeping the last box and class convolutions float as well ("head") changed AP by less
than 0.002 either way but made the graph slower (those 1x1 convolutions are a large part of
the head's work). README's Export section gives the measurements.

Activations are unsigned and weights signed 8-bit without range reduction (onnxruntime's
advice for x86 CPUs with VNNI; on older x86 CPUs ``reduce_range`` avoids saturation).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NamedTuple, Optional, Sequence

import numpy as np
import torch

from .atomic import atomic_path

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

# what stays float: "post" = the nodes after the last convolutions; "head" = those and the
# last convolutions (box offsets, class logits); "none" = all onnxruntime quantizes by default
FLOAT_PARTS = ("post", "head", "none")
DEFAULT_CALIBRATION_IMAGES = 200
_CALIBRATION_BATCH = 8
_RANGE_BATCHES = 4  # batches of intermediate outputs kept at once while computing ranges


class Calibration(NamedTuple):
    """Preprocessed calibration images: what the float graph sees at inference."""

    images: torch.Tensor  # (N, 3, H, W) float32, normalized
    image_hw: torch.Tensor  # (N, 2) int64 original sizes (the --nms graph's second input)
    source: str


def calibration_images(source: str | Path, cfg: "Config", count: int = DEFAULT_CALIBRATION_IMAGES) -> Calibration:
    """``count`` images of ``source`` through ssdzoo's evaluation preprocessing.

    ``source``: a packed dataset (its training split ``cfg.train_split``, else a split named
    train*, else ``cfg.val_split``, else any; or a split folder), a COCO root (the same splits), or a folder of image files (or one file).
    Calibration needs pixels only: a dataset's classes need not be the model's. The training
    split, not the split the quantized model is evaluated on next, so that the ranges are not
    fitted to the test images. From a dataset the images are evenly spaced over it; from a
    folder the first ``count`` in name order. An image that cannot be read is skipped with a
    warning naming it.
    """
    from .data import load_dataset
    from .data.coco import annotation_path
    from .data.dataset import SkippedImage
    from .data.packed import PackedSplit, is_packed_split
    from .inference import ImageReadError, preprocess
    from .predict import collect_images

    if count < 1:
        raise ValueError(f"--calibration-images {count}: must be at least 1")
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"calibration data not found: {path}")
    found = sorted(p.parent.name for p in path.glob("*/manifest.json")) if path.is_dir() else []
    wanted = dict.fromkeys((cfg.train_split, *(s for s in found if s.startswith("train")), cfg.val_split, *found))
    splits = [s for s in wanted if path.is_dir() and (is_packed_split(path / s) or annotation_path(path, s).is_file())]
    if is_packed_split(path):
        splits = [PackedSplit(path).split]  # a split folder: that split, whatever its name
    pixels_only = cfg.replace(classes=None, num_classes=None)  # any classes: only the images are used
    datasets = ((s, load_dataset(path, pixels_only, train=False, split=s)) for s in splits)
    split, dataset = next(((s, d) for s, d in datasets if len(d)), (None, None))  # the first with images
    if splits:
        if dataset is None:
            raise ValueError(f"{path}: no images to calibrate with in {', '.join(splits)}")
        if not split.startswith("train") and not is_packed_split(path):
            log.warning("calibration: %s has no training split with images (%r); calibrating on %s",
                        path, cfg.train_split, split)
        dataset.skip_unreadable = True  # a damaged image: logged with its name and skipped
        picks = np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int))
        samples = [s for s in (dataset[int(i)] for i in picks) if not isinstance(s, SkippedImage)]
        if not samples:
            raise ValueError(f"{dataset.source}: no readable images to calibrate with")
        return Calibration(torch.stack([s.image for s in samples]), torch.stack([s.image_hw for s in samples]),
                           f"{dataset.source} ({len(samples)} of {len(dataset)} images)")
    images, hws = [], []
    for file in collect_images([path]):
        if len(images) == count:
            break
        try:
            batch, image_hw = preprocess([file], cfg)
        except ImageReadError as err:
            log.warning("calibration: skipping %s", err)
            continue
        images.append(batch)
        hws.append(image_hw)
    if not images:
        raise ValueError(f"{path}: no readable images to calibrate with")
    return Calibration(torch.cat(images), torch.cat(hws), f"{path} ({len(images)} images)")


class _Reader:
    """onnxruntime's CalibrationDataReader: the calibration set in batches, as graph feeds."""

    def __init__(self, calibration: Calibration, input_names: Sequence[str]):
        self.batches = self._batches(calibration, list(input_names))

    @staticmethod
    def _batches(calibration: Calibration, input_names: list[str]) -> Iterator[dict]:
        for start in range(0, len(calibration.images), _CALIBRATION_BATCH):
            feeds = {input_names[0]: calibration.images[start:start + _CALIBRATION_BATCH].numpy()}
            if len(input_names) > 1:  # the --nms graph: original sizes for the pixel boxes
                feeds[input_names[1]] = calibration.image_hw[start:start + _CALIBRATION_BATCH].numpy().astype(np.float32)
            yield feeds

    def get_next(self) -> Optional[dict]:
        return next(self.batches, None)


def graph_parts(model) -> tuple[list[str], list[str]]:
    """(the last Conv nodes: no Conv after them, the nodes after the network: no Conv after
    them and not a Conv) of an ONNX graph, by node name."""
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(model.graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    feeds_conv = [False] * len(model.graph.node)  # a Conv at or after the node
    for i in reversed(range(len(model.graph.node))):  # ONNX nodes are in topological order
        node = model.graph.node[i]
        after = any(feeds_conv[j] for out in node.output for j in consumers.get(out, ()))
        feeds_conv[i] = after or node.op_type == "Conv"
    last_convs, post = [], []
    for i, node in enumerate(model.graph.node):
        after = any(feeds_conv[j] for out in node.output for j in consumers.get(out, ()))
        if node.op_type == "Conv" and not after:
            last_convs.append(node.name)
        elif not feeds_conv[i]:
            post.append(node.name)
    return last_convs, post


@contextlib.contextmanager
def quiet_onnxruntime():
    """onnxruntime without its chatter: the quantization tools log every bias they copy and
    every weight scale they raise through the root logger at INFO ("Created a copy of bias",
    "Increased scale", dozens a graph), and its sessions print C++ warnings; both are
    limited to errors and warnings meant for the user (ssdzoo's own) while this runs."""
    import onnxruntime

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(root.getEffectiveLevel(), logging.WARNING))
    onnxruntime.set_default_logger_severity(3)  # errors only
    try:
        yield
    finally:
        root.setLevel(level)
        onnxruntime.set_default_logger_severity(2)  # onnxruntime's default: warnings


def quantize_onnx(float_path: str | Path, out_path: str | Path, calibration: Calibration, *,
                  float_part: str = "post", per_channel: bool = True, reduce_range: bool = False) -> Path:
    """Write the int8 QDQ version of the ``ssdzoo export`` graph at ``float_path`` to ``out_path``
    (atomically), calibrated (MinMax) on ``calibration``. ``float_part``: see ``FLOAT_PARTS``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if float_part not in FLOAT_PARTS:
        raise ValueError(f"float_part {float_part!r}: expected one of {', '.join(FLOAT_PARTS)}")
    float_path, out_path = Path(float_path), Path(out_path)
    source = onnx.load(str(float_path))
    metadata = {p.key: p.value for p in source.metadata_props}
    input_names = [i.name for i in source.graph.input]
    with tempfile.TemporaryDirectory(prefix="ssdzoo-int8-", dir=out_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # BN folded into the convs and shapes inferred, so that each conv quantizes as one unit;
        # symbolic shape inference is for transformers and fails on the --nms graph's output
        with quiet_onnxruntime():
            quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
            last_convs, post = graph_parts(onnx.load(str(prepared)))
            exclude = {"head": last_convs + post, "post": post, "none": []}[float_part]
            quantized = Path(tmp) / "int8.onnx"
            quantize_static(
                str(prepared), str(quantized), _Reader(calibration, input_names), quant_format=QuantFormat.QDQ,
                per_channel=per_channel, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
                extra_options={"CalibMaxIntermediateOutputs": _RANGE_BATCHES})
        model = onnx.load(str(quantized))
    metadata["ssdzoo.quantization"] = json.dumps({
        "format": "QDQ", "weights": "int8 per channel" if per_channel else "int8 per tensor",
        "activations": "uint8", "reduce_range": reduce_range, "calibration": "MinMax",
        "calibration_images": len(calibration.images), "calibration_source": calibration.source,
        "float": {"head": "last head convolutions and everything after the network",
                  "post": "everything after the network", "none": "nothing"}[float_part]})
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    with atomic_path(out_path) as tmp_path:
        onnx.save(model, str(tmp_path))
    return out_path


class Int8Check(NamedTuple):
    """int8 against float32, both in onnxruntime, on the same preprocessed images."""

    images: int
    max_prob_diff: Optional[float]  # plain graphs; None for --nms graphs
    min_score: float
    float_detections: int  # float32 detections scoring >= min_score
    found: int  # of those, int8 detections of the same label and image with IoU >= iou
    iou: float


def check_int8(int8_path: str | Path, float_path: str | Path, cfg: "Config", calibration: Calibration, *,
               count: int = 16, min_score: float = 0.5, iou: float = 0.5) -> Int8Check:
    """Run the first ``count`` images of ``calibration`` through both graphs and compare."""
    from .inference import Predictor

    images, image_hw = calibration.images[:count], calibration.image_hw[:count]
    float_predictor = Predictor.from_weights(cfg, float_path)
    int8_predictor = Predictor.from_weights(cfg, int8_path)
    prob_diff = None
    if not float_predictor.network.has_nms:
        _, probs_float = float_predictor.network(images)
        _, probs_int8 = int8_predictor.network(images)
        prob_diff = float((probs_float - probs_int8).abs().max())
    reference = float_predictor.predict_batch(images, image_hw)
    found, total = matched_detections(reference, int8_predictor.predict_batch(images, image_hw),
                                      min_score=min_score, iou=iou)
    return Int8Check(len(images), prob_diff, min_score, total, found, iou)


def matched_detections(reference, other, *, min_score: float, iou: float) -> tuple[int, int]:
    """(reference detections scoring >= min_score that ``other`` also has: same image and label,
    IoU >= iou, any score; how many reference detections score >= min_score)."""
    from torchvision.ops import box_iou

    found = total = 0
    for ref, oth in zip(reference, other):
        keep = ref.scores >= min_score
        total += int(keep.sum())
        if not keep.any() or len(oth.scores) == 0:
            continue
        overlaps = box_iou(ref.boxes[keep].double(), oth.boxes.double())  # (R, O)
        same_label = ref.labels[keep][:, None] == oth.labels[None, :]
        found += int(((overlaps >= iou) & same_label).any(dim=1).sum())
    return found, total
