"""A tiny detector for the inference, predict and export tests: timm's test_efficientnet at
64x64, three classes, 84 default boxes. Builds in well under a second."""

from __future__ import annotations

import torch

import ssdzoo

TINY_OVERRIDES = [
    "image_size=[64,64]", "backbone=test_efficientnet", "backbone_use_head=false",
    "extras_in_channels=[0,96,64,64]", "extras_out_channels=[96,64,64,32]",
    "feature_size=[4,2,1,1]", "steps=[16,32,64,64]", "num_ssd_boxes=84",
]


def tiny_config(*extra: str) -> ssdzoo.Config:
    return ssdzoo.load_config("demo", [*TINY_OVERRIDES, *extra])


def tiny_model(cfg: ssdzoo.Config, *, seed: int = 0) -> ssdzoo.Detector:
    """Random weights whose class scores spread over (0, 1) and depend on the image, as a
    trained model's do (the seed's init puts every score near 0.5, with ties)."""
    torch.manual_seed(seed)
    model = ssdzoo.build_model(cfg).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
        for branch in model.head.cls:
            torch.nn.init.normal_(branch[-1].bias, mean=-2.0, std=1.0)
    return model
