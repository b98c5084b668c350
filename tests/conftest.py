"""Shared fixtures: the golden vectors of the seed's code, the tiny config and model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_config, tiny_model

ROOT = Path(__file__).resolve().parents[1]


def _golden_dir() -> Path:
    """$SSDZOO_GOLDEN_DIR, else shared/golden inside or beside the checkout."""
    if os.environ.get("SSDZOO_GOLDEN_DIR"):
        return Path(os.environ["SSDZOO_GOLDEN_DIR"])
    inside, beside = ROOT / "shared" / "golden", ROOT.parent / "shared" / "golden"
    return inside if inside.is_dir() else beside


GOLDEN_DIR = _golden_dir()


def load_golden(name: str) -> dict[str, np.ndarray]:
    """A golden .npz file; missing files fail the test (they are the reference, not optional)."""
    path = GOLDEN_DIR / name
    if not path.is_file():
        pytest.fail(f"golden file {path} is missing (set SSDZOO_GOLDEN_DIR to the golden folder)")
    with np.load(path) as data:
        return dict(data)


def yx_to_xy(array: np.ndarray) -> np.ndarray:
    """The seed's (y, x, y, x) box columns to ssdzoo's (x, y, x, y); works for offsets too."""
    return array[..., [1, 0, 3, 2]]


@pytest.fixture(scope="module")
def cfg():
    """The tiny config (tests/tiny.yaml); a module overrides this fixture for other overrides."""
    return tiny_config()


@pytest.fixture(scope="module")
def model(cfg):
    """A tiny model of the module's ``cfg``, random weights."""
    return tiny_model(cfg)
