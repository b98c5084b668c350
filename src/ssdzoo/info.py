"""What a config builds: parameters, FLOPs, default boxes and feature-map shapes."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .anchors import default_boxes
from .config import Config
from .model import build_model


def model_info(cfg: Config, name: str = "") -> dict:
    """Counts from a real model and one forward pass of a single image at the config's size."""
    model = build_model(cfg).eval()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    images = torch.zeros(1, 3, *cfg.image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        maps = model.feature_maps(images)
        model.head(maps)
    return {
        "config": name,
        "backbone": cfg.backbone,
        "image_size": list(cfg.image_size),
        "params": params,
        "params_with_buffers": params + buffers,
        "gflops": counter.get_total_flops() / 1e9,
        "anchors": len(default_boxes(cfg)),
        "levels": [{"shape": list(m.shape[1:]), "boxes_per_location": b}
                   for m, b in zip(maps, cfg.num_default)],
    }
