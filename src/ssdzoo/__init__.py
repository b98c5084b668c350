"""ssdzoo: SSD object detection on any timm backbone.

The data flow, one function per arrow:
    load_config -> build_model -> model(images) -> (loc, logits)
    default_boxes(cfg) -> anchors;  encode(gt_boxes_xyxy, gt_labels, anchors, cfg) -> targets
    ssd_loss(loc, logits, target_loc, target_labels, cfg);  lr_schedule(cfg, steps_per_epoch)
    decode(loc, anchors, cfg) -> boxes_xyxy;  postprocess(boxes_xyxy, probs, cfg, image_hw)

Every submodule is an attribute too, imported on first use (``ssdzoo.inference.Predictor``,
``ssdzoo.predict.run_predict``), so ``import ssdzoo`` stays as cheap as these imports.
"""

import importlib
import importlib.util

from .anchors import default_boxes
from .config import Config, ConfigError, load_config
from .data import load_dataset
from .loss import ssd_loss
from .model import Detector, build_model
from .postprocess import Detections, postprocess
from .schedule import lr_schedule
from .targets import decode, encode

__version__ = "0.1.0"


def __getattr__(name: str):
    """``ssdzoo.<submodule>`` without importing it first (PEP 562): imported on first use."""
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Config", "ConfigError", "Detections", "Detector", "build_model", "decode", "default_boxes",
    "encode", "load_config", "load_dataset", "lr_schedule", "postprocess", "ssd_loss",
]
