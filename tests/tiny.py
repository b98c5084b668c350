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


def make_tiny_shapes(root: Path) -> Path:
    """16 training and 8 validation images of the synthetic shapes, 64-96 px (the tiny
    config's training data: 4 steps an epoch at batch 4)."""
    from ssdzoo.data import make_synthetic_coco
    from ssdzoo.data.synthetic import SynthSpec

    make_synthetic_coco(root, seed=3, num_train=16, num_val=8, progress=False,
                        spec=SynthSpec(min_side=64, max_side=96, min_object=12.0))
    return root


def tiny_run_config(data_dir: Path, out_dir: Path, *overrides: str) -> ssdzoo.Config:
    return tiny_config(f"data_dir={data_dir}", f"ckpt_save_dir={out_dir}", *overrides)


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    from ssdzoo.engine.checkpoint import load_checkpoint

    return load_checkpoint(path)["model"]


def assert_same_weights(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    """Bit for bit: what an exact resume must give."""
    assert expected.keys() == actual.keys()
    different = [name for name in expected if not torch.equal(expected[name], actual[name])]
    assert not different, f"{len(different)} of {len(expected)} tensors differ, first {different[0]}"
