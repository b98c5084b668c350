"""The tiny detector of the tests (tiny.yaml): timm's test_efficientnet at 64x64, three
classes, 78 default boxes. Builds in well under a second."""

from __future__ import annotations

from pathlib import Path

import torch

import ssdzoo

TINY_CONFIG = Path(__file__).with_name("tiny.yaml")


def tiny_config(*overrides: str) -> ssdzoo.Config:
    return ssdzoo.load_config(TINY_CONFIG, overrides)


def tiny_model(cfg: ssdzoo.Config, *, seed: int = 0) -> ssdzoo.Detector:
    """Random weights whose class scores spread over (0, 1) and depend on the image, as a
    trained model's do (the seed's init puts every score near 0.5, with ties)."""
    torch.manual_seed(seed)
    model = ssdzoo.build_model(cfg).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
        for conv in model.head.cls_convs():
            torch.nn.init.normal_(conv.bias, mean=-2.0, std=1.0)
    return model
