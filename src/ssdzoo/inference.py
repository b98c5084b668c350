"""The inference path, end to end: images of any size -> one ``Detections`` per image.

    preprocess   resize to cfg.image_size and normalize, as the evaluation pipeline does
    network      a ``Detector`` in PyTorch, or an exported ONNX graph run by onnxruntime
    decode       class scores from the logits (sigmoid, or softmax); offsets -> boxes with
                 ``default_boxes(cfg)``
    postprocess  ``ssdzoo.postprocess``: per-class candidates and NMS (the seed's rule, or
                 torchvision's by config), boxes scaled to each original image's pixels

The same ``Predictor`` runs a model in memory, an ssdzoo checkpoint (.pt, .safetensors,
MindSpore .ckpt) or an .onnx file from ``ssdzoo export`` (with or without NMS in the graph),
and gives the same detections for all of them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .anchors import default_boxes
from .data.images import ImageFileError, read_rgb
from .data.transforms import normalize, resize_image
from .postprocess import POSTPROCESS_KEYS, Detections, decode_outputs, postprocess, split_by_image

if TYPE_CHECKING:
    from .config import Config
    from .model import Detector

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


class ImageReadError(ValueError):
    """A file that is not a readable image, or an array that is not an RGB image."""


def load_image(source: ImageInput) -> np.ndarray:
    """A file path, PIL image or uint8 array -> (H, W, 3) uint8 RGB array.

    Grayscale, palette and RGBA images become 3-channel RGB, as the seed does; a file is read
    as a viewer shows it (its EXIF orientation applied).
    """
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8:
            raise ImageReadError(f"image array must be uint8, got {source.dtype}")
        if source.ndim == 2:
            source = source[:, :, None]
        if source.ndim != 3 or source.shape[2] not in (1, 3):
            raise ImageReadError(f"image array must be (H, W, 3) or (H, W), got {source.shape}")
        return np.array(np.broadcast_to(source, source.shape[:2] + (3,)))  # a writable copy
    if isinstance(source, Image.Image):
        return np.array(source.convert("RGB"))
    try:
        return read_rgb(source)  # as a viewer shows it: EXIF orientation applied
    except ImageFileError as err:
        raise ImageReadError(f"{source}: not a readable image ({err.reason})") from err


def preprocess(images: Sequence[ImageInput], cfg: "Config") -> tuple[Tensor, Tensor]:
    """Images of any sizes -> (batch (N, 3, H, W) float32 normalized, image_hw (N, 2) int64).

    The evaluation pipeline's own resize (bilinear with antialiasing, no aspect keeping, as the
    seed; TF1's legacy bilinear with ``image_resize: legacy``) and normalization, so that predictions match ``ssdzoo eval``'s. ``image_hw`` holds
    each original (height, width), which postprocessing scales boxes to.
    """
    arrays = [load_image(image) for image in images]
    image_hw = torch.tensor([a.shape[:2] for a in arrays], dtype=torch.int64).reshape(-1, 2)
    batch = torch.empty(len(arrays), 3, *cfg.image_size)
    for i, array in enumerate(arrays):
        pixels = torch.from_numpy(array).permute(2, 0, 1)  # (3, h, w) uint8
        batch[i] = normalize(resize_image(pixels, cfg.image_size, cfg.image_resize), mean=cfg.mean, std=cfg.std)
    return batch, image_hw


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; anything else as torch.device reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    return resolved


class Predictor:
    """Images -> ``Detections`` (pixels of each original image), batched, in eval mode.

    ``Predictor(cfg, model)`` wraps a model in memory (moved to ``device`` in place, in eval
    mode); ``Predictor.from_weights(cfg, path)`` reads an ssdzoo checkpoint or runs an exported
    .onnx graph. ``min_score`` replaces ``cfg.min_score`` (a stricter threshold before NMS keeps
    exactly the detections a looser one keeps above it: a box under the threshold can't
    suppress a higher-scoring one). ``channels_last`` runs the PyTorch model in NHWC layout,
    15-25% faster on the CPU for these models (measured, see notes_README_export.md).
    """

    def __init__(self, cfg: "Config", model: Optional["Detector"] = None, *, device: str = "cpu",
                 min_score: Optional[float] = None, onnx_path: Optional[str | Path] = None,
                 channels_last: bool = True):
        if (model is None) == (onnx_path is None):
            raise ValueError("Predictor needs exactly one of a model or an onnx_path")
        self.cfg = cfg
        self.min_score = cfg.min_score if min_score is None else float(min_score)
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        self.device = resolve_device(device)
        if model is not None:
            self.network = TorchNetwork(model, cfg, self.device, channels_last=channels_last)
        else:
            self.network = OnnxNetwork(onnx_path, cfg, self.device)
            if self.network.has_nms and self.min_score < self.network.min_score:
                raise ValueError(f"{onnx_path}: the graph's NMS keeps scores > "
                                 f"{self.network.min_score}; min_score {self.min_score} needs a "
                                 "graph exported without --nms")

    @classmethod
    def from_weights(cls, cfg: "Config", path: str | Path, *, device: str = "cpu",
                     min_score: Optional[float] = None) -> "Predictor":
        """An ssdzoo checkpoint (.pt, .safetensors, MindSpore .ckpt), a TensorFlow OD API graph
        or checkpoint (with ``ssdzoo.convert.tensorflow_config``'s config) or an .onnx file."""
        from .weights import WeightsFileError, weights_kind

        path = Path(path)
        try:
            kind = weights_kind(path)
        except WeightsFileError as err:  # name .onnx among the kinds: this one runs them
            raise WeightsFileError(path, err.reason, onnx=True) from None
        if kind == "onnx":
            return cls(cfg, device=device, min_score=min_score, onnx_path=path)
        from .model import build_model

        return cls(cfg, build_model(cfg, weights=path), device=device, min_score=min_score)

    def predict(self, images: Sequence[ImageInput], *, batch_size: int = 16) -> list[Detections]:
        """One ``Detections`` per image, in order; images go through the network in batches."""
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            raise TypeError("predict takes a list of images; wrap a single image in a list")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        detections: list[Detections] = []
        for start in range(0, len(images), batch_size):
            batch, image_hw = preprocess(images[start:start + batch_size], self.cfg)
            detections += self.predict_batch(batch, image_hw)
        return detections

    __call__ = predict

    @torch.inference_mode()
    def predict_batch(self, batch: Tensor, image_hw: Tensor) -> list[Detections]:
        """A preprocessed batch (N, 3, H, W) and original sizes (N, 2) -> N Detections (on cpu)."""
        if len(batch) == 0:
            return []
        if self.network.has_nms:
            return self.network.detections(batch, image_hw, min_score=self.min_score)
        boxes_xyxy, probs = self.network(batch)
        return postprocess(boxes_xyxy, probs, self.cfg, image_hw.to(boxes_xyxy.device), min_score=self.min_score,
                           device="cpu")


class TorchNetwork:
    """A Detector on a device: normalized batch -> (boxes_xyxy (N, A, 4) normalized, probs (N, A, C))."""

    has_nms = False

    def __init__(self, model: "Detector", cfg: "Config", device: torch.device, *, channels_last: bool = True):
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format).eval()
        self.cfg = cfg
        self.device = device
        self.anchors_cxcywh = default_boxes(cfg).to(device=device, dtype=torch.float32)

    def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        batch = batch.to(self.device, memory_format=self.memory_format, non_blocking=True)
        loc, logits = self.model(batch)
        return decode_outputs(loc, logits, self.anchors_cxcywh, self.cfg)


class OnnxNetwork:
    """An ``ssdzoo export`` graph in onnxruntime. Without NMS it gives (boxes, probs) like
    ``TorchNetwork``; with NMS (``has_nms``) it gives final detections."""

    def __init__(self, path: str | Path, cfg: "Config", device: torch.device):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(f"{path}: device {device} asked for, but this onnxruntime has no "
                                 "CUDAExecutionProvider (install onnxruntime-gpu)")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: not a loadable ONNX graph ({err})") from err
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        graph_hw = tuple(inputs[0].shape[2:])
        if graph_hw != tuple(cfg.image_size):
            raise ValueError(f"{path}: the graph takes {list(graph_hw)} images but the config's "
                             f"image_size is {list(cfg.image_size)}")
        meta = self.session.get_modelmeta().custom_metadata_map
        self.has_nms = outputs == ["batch_index", "boxes", "scores", "labels"]
        if not self.has_nms and outputs != ["boxes", "probs"]:
            raise ValueError(f"{path}: outputs {outputs} are not an ssdzoo export's")
        if self.has_nms:
            self.min_score = float(meta.get("ssdzoo.min_score", cfg.min_score))
            for key, value in (("nms_threshold", cfg.nms_threshold), ("max_boxes", cfg.max_boxes)):
                saved = meta.get(f"ssdzoo.{key}")
                if saved is not None and float(saved) != value:
                    raise ValueError(f"{path}: the graph's NMS uses {key} {saved}, the config {value}")
        # what a plain graph does (scores) and what an NMS graph does besides (the rest)
        for key in ("nms_plus_one", *POSTPROCESS_KEYS) if self.has_nms else ("score_activation",):
            saved = meta.get(f"ssdzoo.{key}")
            if saved is not None and json.loads(saved) != getattr(cfg, key):
                raise ValueError(f"{path}: the graph has {key} {saved}, the config {json.dumps(getattr(cfg, key))}")
        saved_classes = meta.get("ssdzoo.num_classes")
        if saved_classes is not None and int(saved_classes) != cfg.num_classes:
            raise ValueError(f"{path}: the graph has {saved_classes} classes, the config "
                             f"{cfg.num_classes}")
        self.input_names = [i.name for i in inputs]

    def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        boxes_xyxy, probs = self.session.run(None, {self.input_names[0]: _contiguous_numpy(batch)})
        return torch.from_numpy(boxes_xyxy), torch.from_numpy(probs)

    def detections(self, batch: Tensor, image_hw: Tensor, *, min_score: float) -> list[Detections]:
        """Flat NMS outputs -> per-image Detections ordered by label, then score descending."""
        feeds = {self.input_names[0]: _contiguous_numpy(batch),
                 self.input_names[1]: image_hw.cpu().numpy().astype(np.float32)}
        image_i, boxes_px, scores, labels = (torch.from_numpy(a) for a in self.session.run(None, feeds))
        keep = scores > min_score  # a stricter threshold than the graph's keeps what it would keep
        image_i, boxes_px, scores, labels = image_i[keep], boxes_px[keep], scores[keep], labels[keep]
        order = torch.sort(scores, descending=True, stable=True).indices
        for key in (labels, image_i):  # stable sorts: by image, then label, then score descending
            order = order[torch.sort(key[order], stable=True).indices]
        return split_by_image(image_i[order], boxes_px[order], scores[order], labels[order].long(), len(batch))


def _contiguous_numpy(batch: Tensor) -> np.ndarray:
    """(N, 3, H, W) in C order, as onnxruntime reads its inputs."""
    return np.ascontiguousarray(batch.cpu().numpy())
