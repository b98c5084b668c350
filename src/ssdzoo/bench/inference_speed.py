"""Inference speed end to end: a decoded 640x480 picture in, detections in pixels out.

Variants, timed in interleaved rounds in one process (``timing.interleaved``):
- ssdzoo ``Predictor`` with PyTorch (resize, normalize, model, decode, the seed's NMS);
- the same with onnxruntime on ``ssdzoo export``'s plain graph (``ssdzoo.postprocess`` after
  it), on its ``--nms`` graph, and (CPU) on the plain graph quantized to int8 (``ssdzoo.quantize``,
  calibrated on synthetic pictures), exported once to a temporary folder;
- torchvision's ssdlite320_mobilenet_v3_large through its own pipeline (its transform
  resizes to 320x320 and normalizes; its post-processing keeps scores over 0.001, the top 300
  per class, batched NMS, 300 detections at most).

Batch 1 gives the latency, batch ``throughput_batch`` (copies of the picture) images/s.
Random weights, so the amount of NMS work is set by a score regime (``REGIMES``): ssdzoo's
class logits get a fixed bias. torchvision's random head scores every class near 1/K, above
its 0.001 threshold: its post-processing runs at its largest load.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..export import export_onnx, synthetic_images
from ..inference import Predictor, preprocess
from ..model import Detector, build_model
from ..postprocess import postprocess
from .timing import interleaved, synchronizer

log = logging.getLogger(__name__)

TORCHVISION_NAME = "torchvision ssdlite320_mobilenet_v3_large"
FLOAT_LABEL, INT8_LABEL = "onnxruntime + postprocess", "onnxruntime int8 + postprocess"
GRAPH_PART = ": graph alone"  # parts_batch1 suffix: session.run of an onnxruntime variant
IMAGE_HW = (480, 640)
_PRIOR_LOGIT = -4.595  # sigmoid = 0.01, under every recipe's min_score
# regime -> what it puts on the class logits: "sparse": no score over min_score (the network
# and fixed costs); "busy": class 1 at sigmoid(-2) = 0.12 everywhere (every anchor an NMS
# candidate of one class, like a crowded picture; 100 kept); "seed-init": the seed's zero-bias
# head untouched (every score near 0.5: anchors x classes candidates, the worst case).
REGIMES = ("sparse", "busy", "seed-init")


def class_bias(regime: str, num_classes: int) -> Optional[torch.Tensor]:
    """(num_classes,) logit bias of ``regime`` (None: leave the head as initialized)."""
    if regime not in REGIMES:
        raise ValueError(f"score regime {regime!r}: expected one of {', '.join(REGIMES)}")
    if regime == "seed-init":
        return None
    bias = torch.full((num_classes,), _PRIOR_LOGIT)
    if regime == "busy":
        bias[1] = -2.0
    return bias


def set_class_bias(model: Detector, bias: torch.Tensor) -> None:
    """Put ``bias`` (num_classes,) on every anchor's class logits (the last conv of each class
    branch, or the shared class conv)."""
    head_cls = model.head.cls
    convs = [branch[-1] for branch in head_cls] if isinstance(head_cls, nn.ModuleList) else [head_cls]
    with torch.no_grad():
        for conv in convs:
            conv.bias.copy_(bias.repeat(conv.bias.numel() // len(bias)))


def regime_model(cfg: Config, regime: str, *, seed: int = 0) -> Detector:
    """A random-init model in eval mode whose scores follow ``regime``."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    bias = class_bias(regime, cfg.num_classes)
    if bias is not None:
        set_class_bias(model, bias)
    return model


def onnx_predictors(model: Detector, cfg: Config, folder: Path, *, name: str, device: str,
                    threads: Optional[int], int8: bool = False) -> dict[str, Predictor]:
    """``model`` exported as the plain and the --nms graph into ``folder`` (and with ``int8``
    the plain graph quantized, calibrated on 12 synthetic pictures), each in a Predictor
    (onnxruntime with ``threads`` intra-op threads; None: its default)."""
    predictors = {}
    for nms, label in ((False, "onnxruntime + postprocess"), (True, "onnxruntime --nms")):
        path = export_onnx(model, cfg, folder / f"{Path(name).stem}{'_nms' if nms else ''}.onnx", nms=nms)
        predictors[f"{name} {label}"] = _onnx_predictor(cfg, path, device, threads)
        if int8 and not nms:
            from ..quantize import Calibration, quantize_onnx

            pictures = [image for seed in range(4) for image in synthetic_images(seed=seed)]
            calibration = Calibration(*preprocess(pictures, cfg), source="12 synthetic pictures")
            int8_path = quantize_onnx(path, folder / f"{Path(name).stem}.int8.onnx", calibration)
            predictors[f"{name} {INT8_LABEL}"] = _onnx_predictor(cfg, int8_path, device, threads)
    return predictors


def _onnx_predictor(cfg: Config, path: Path, device: str, threads: Optional[int]) -> Predictor:
    predictor = Predictor(cfg, onnx_path=path, device=device)
    if threads is not None:
        _limit_onnx_threads(predictor, path, threads)
    return predictor


def _limit_onnx_threads(predictor: Predictor, path: Path, threads: int) -> None:
    """Reopen the predictor's session with ``threads`` intra-op threads (Predictor opens it
    with onnxruntime's default, one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    network = predictor.network
    network.session = ort.InferenceSession(str(path), options, providers=network.session.get_providers())


class TorchvisionPredictor:
    """torchvision's ssdlite320_mobilenet_v3_large, random init, end to end: uint8 (H, W, 3)
    pictures -> its list of {"boxes", "scores", "labels"}."""

    def __init__(self, num_classes: int, device: torch.device, *, channels_last: bool, seed: int = 0):
        from torchvision.models.detection import ssdlite320_mobilenet_v3_large

        torch.manual_seed(seed)
        model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model, self.device = model.to(device).eval(), device

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        tensors = [torch.from_numpy(image).to(self.device).permute(2, 0, 1).float().div_(255) for image in images]
        return [{k: v.cpu() for k, v in d.items()} for d in self.model(tensors)]


def bench_inference(cfgs: dict[str, Config], device: torch.device, *, regime: str = "busy",
                    channels_last: bool = True, onnx: bool = True, int8: bool = True, torchvision: bool = True,
                    threads: Optional[int] = None, throughput_batch: int = 32, rounds: int = 5,
                    calls_per_round: int = 10, warmup: int = 3, throughput_rounds: int = 5) -> dict:
    """Latency at batch 1 and images/s at ``throughput_batch`` of every variant, interleaved;
    the parts of ssdzoo's PyTorch path at batch 1; what was skipped and why."""
    image = np.array(synthetic_images(sizes_hw=(IMAGE_HW,))[0])  # writable, as a decoded file is
    sync = synchronizer(device)
    predictors: dict[str, Callable[[list[np.ndarray]], list]] = {}
    skipped: dict[str, str] = {}
    parts: dict[str, Callable[[], object]] = {}
    with tempfile.TemporaryDirectory(prefix="ssdzoo-bench-") as tmp:
        for name, cfg in cfgs.items():
            model = regime_model(cfg, regime)
            torch_predictor = Predictor(cfg, model, device=str(device), channels_last=channels_last)
            predictors[f"{name} PyTorch"] = _whole_batches(torch_predictor)
            parts.update(_torch_parts(torch_predictor, image, name))
            if onnx:
                reason = _onnx_unavailable(device)
                if reason:
                    skipped[f"{name} onnxruntime"] = reason
                else:
                    log.info("exporting %s to ONNX (plain and --nms graphs)", name)
                    for label, p in onnx_predictors(model, cfg, Path(tmp), name=name, device=str(device),
                                                    threads=threads, int8=int8 and device.type == "cpu").items():
                        predictors[label] = _whole_batches(p)
                        if label.endswith((FLOAT_LABEL, INT8_LABEL)):
                            parts[label + GRAPH_PART] = _graph_alone(p, image)
        if torchvision:
            first = next(iter(cfgs.values()))
            predictors[TORCHVISION_NAME] = TorchvisionPredictor(first.num_classes, device,
                                                                channels_last=channels_last).predict

        detections = {name: _count(predict([image])) for name, predict in predictors.items()}
        log.info("inference latency, batch 1: %d variants, %d warm-up + %d timed calls each",
                 len(predictors), warmup, rounds * calls_per_round)
        latency = interleaved({**{n: (lambda p=p: p([image])) for n, p in predictors.items()}, **parts},
                              rounds=rounds, calls_per_round=calls_per_round, warmup=warmup, sync=sync)
        batch = [image] * throughput_batch
        log.info("inference throughput, batch %d: %d warm-up + %d timed calls each", throughput_batch,
                 1, throughput_rounds)
        throughput = interleaved({n: (lambda p=p: p(batch)) for n, p in predictors.items()},
                                 rounds=throughput_rounds, calls_per_round=1, warmup=1, sync=sync)
    return {
        "image_hw": list(IMAGE_HW), "regime": regime, "channels_last": channels_last,
        "latency_batch1": {n: {**latency[n].to_dict(), "detections": detections[n]} for n in predictors},
        "throughput": {"batch": throughput_batch,
                       "variants": {n: {"img_per_s": round(throughput_batch / (t.median_ms / 1e3), 2),
                                        **t.to_dict()} for n, t in throughput.items()}},
        "parts_batch1": {n: latency[n].to_dict() for n in parts},
        "skipped": skipped,
    }


def _torch_parts(predictor: Predictor, image: np.ndarray, name: str) -> dict[str, Callable[[], object]]:
    """The three stages of the PyTorch path at batch 1, each callable alone."""
    cfg = predictor.cfg
    batch, image_hw = preprocess([image], cfg)
    with torch.inference_mode():
        boxes_xyxy, probs = predictor.network(batch)

    def network():
        with torch.inference_mode():
            return predictor.network(batch)

    def nms():
        with torch.inference_mode():
            return postprocess(boxes_xyxy, probs, cfg, image_hw.to(boxes_xyxy.device), min_score=predictor.min_score)

    return {f"{name} PyTorch: preprocess": lambda: preprocess([image], cfg),
            f"{name} PyTorch: network + decode": network,
            f"{name} PyTorch: NMS": nms}


def _graph_alone(predictor: Predictor, image: np.ndarray) -> Callable[[], object]:
    """One session.run of an onnxruntime predictor's plain graph on the preprocessed picture."""
    batch, _ = preprocess([image], predictor.cfg)
    return lambda: predictor.network(batch)


def _whole_batches(predictor: Predictor) -> Callable[[list[np.ndarray]], list]:
    """The predictor on all its pictures in one batch (``predict`` splits at 16 by default)."""
    return lambda images: predictor.predict(images, batch_size=len(images))


def _count(detections: list) -> int:
    first = detections[0]
    return len(first["scores"]) if isinstance(first, dict) else len(first.scores)


def _onnx_unavailable(device: torch.device) -> Optional[str]:
    """Why onnxruntime variants can't run here, or None."""
    for module in ("onnxruntime", "onnxscript", "onnx_ir"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    if device.type == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    return None
