"""The package a user installs: the wheel built from this repository, installed with pip into a
fresh folder, finds its recipes from anywhere (`ssdzoo info` of every recipe) and trains the demo
recipe for one epoch on tiny synthetic data; the installed copy, not src/, is the one imported."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.stem for p in (REPO / "src" / "ssdzoo" / "configs").glob("*.yaml"))
# the wheel's sources only: building copies nothing into (and leaves no build/ or egg-info in) the checkout
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "src")


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel, installed with --no-deps into a folder of its own (its dependencies are the
    test environment's). The build backend comes from this environment when it is recent enough
    (no registry needed), else pip fetches it (build isolation)."""
    from setuptools import __version__ as setuptools_version

    root = tmp_path_factory.mktemp("wheel")
    tree = root / "source"
    tree.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, tree / name)
    isolation = ["--no-build-isolation"] if int(setuptools_version.split(".")[0]) >= 77 else []
    built = _pip("wheel", "--no-deps", *isolation, "-w", str(root / "dist"), str(tree), cwd=root)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel, = (root / "dist").glob("ssdzoo-*.whl")
    target = root / "site"
    done = _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (target / "ssdzoo" / "configs").glob("*.yaml")) == [f"{r}.yaml" for r in RECIPES]
    return target


def _ssdzoo(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), OMP_NUM_THREADS="1")
    return subprocess.run([str(target / "bin" / "ssdzoo"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


INFO_EVERY_RECIPE = """
import sys
import ssdzoo
from ssdzoo.cli import main
print(ssdzoo.__file__)
for recipe in sys.argv[1:]:  # what `ssdzoo info RECIPE` runs, in one process (torch imports once)
    assert main(["info", recipe, "--json"]) == 0, recipe
"""


SYNTH_AND_PREPARE = """
from ssdzoo.cli import main
assert main(["synth", "shapes", "--train", "16", "--val", "4", "--workers", "1"]) == 0
assert main(["prepare", "coco", "shapes", "packed", "--workers", "1"]) == 0
"""


def test_the_installed_wheel_finds_its_recipes_and_trains_the_demo(installed, tmp_path):
    outside = tmp_path / "elsewhere"  # no configs/ and no src/ here
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(installed), OMP_NUM_THREADS="1")
    # `ssdzoo info` of every recipe runs beside the training chain (each process imports torch)
    info = subprocess.Popen([sys.executable, "-c", INFO_EVERY_RECIPE, *RECIPES], cwd=outside, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        data = subprocess.run([sys.executable, "-c", SYNTH_AND_PREPARE], cwd=outside, env=env, capture_output=True,
                              text=True, timeout=300)
        assert data.returncode == 0, data.stderr[-2000:]
        train = _ssdzoo(installed, outside, "train", "demo", "data_dir=packed", "ckpt_save_dir=run", "epoch_size=1",
                        "batch_size=8", "eval_while_train=false")  # the installed console script
        assert train.returncode == 0, train.stderr[-3000:]
        assert "last checkpoint: run/last.pt" in train.stdout and (outside / "run" / "last.pt").is_file()
        stdout, stderr = info.communicate(timeout=300)
    finally:
        if info.poll() is None:
            info.kill()
            info.wait()
    assert info.returncode == 0, stderr[-3000:]
    imported, *infos = stdout.splitlines()
    assert Path(imported).is_relative_to(installed), imported  # the wheel's copy, not src/
    assert RECIPES == ["demo", "ssd300_vgg16", "ssd_mobilenetv2", "ssd_mobilenetv3", "ssd_resnet50_fpn",
                       "ssdlite320_mobilenet_v3_large"]
    assert len(infos) == len(RECIPES) and all('"anchors"' in line for line in infos)
