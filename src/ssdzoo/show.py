"""`ssdzoo show`: a grid of dataset samples with their boxes and class names, to check labels.

    show_samples("data/voc_packed", "samples.png", split="train", count=16)

Each cell is one image as the loader reads it: upright (EXIF orientation applied) with its
training boxes, or with ``augment`` the training pipeline's output at the config's input size
(random IoU crop, resize, flip, colour jitter) with the boxes that survive it. Samples are
drawn at random (``seed``) from the split, shown in index order; a background image shows no
box; an image that cannot be read or decoded is logged by name and left out. The picture is
written atomically as PNG.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_path
from .visualize import draw_boxes

if TYPE_CHECKING:
    from .config import Config

CAPTION_HEIGHT = 16

log = logging.getLogger(__name__)


class ShowResult(NamedTuple):
    path: Path
    split: str  # the folder the samples came from
    indices: list[int]  # dataset positions drawn (not those that could not be decoded)
    boxes: int  # boxes drawn


def default_split(data: str | Path, cfg: "Config") -> str:
    """What ``show`` draws without --split: DATA itself if it is one split, else the config's
    train_split if present, else a packed split whose name starts with "train", else the first."""
    from .data.packed import PackedSplit, is_packed_split

    data = Path(data)
    if is_packed_split(data):
        return PackedSplit(data).split  # not the config's split, which load_dataset would read beside it
    found = sorted(p.parent.name for p in data.glob("*/manifest.json"))
    if cfg.train_split in found or not found:
        return cfg.train_split
    return next((s for s in found if s.startswith("train")), found[0])


def check_showable(data: str | Path) -> None:
    """``data`` must exist and be a dataset ``show`` reads: a raw VOC or YOLO dataset (or a COCO
    export's json) is an error saying which ``prepare`` packs it."""
    from .data.packed import is_packed_split

    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"{data} does not exist")
    pack = ("show draws a packed dataset (or a COCO root): pack it first with `ssdzoo prepare {} OUT`, "
            "then `ssdzoo show OUT`")
    if data.is_file():
        kind = {".yaml": "yolo", ".yml": "yolo", ".json": "coco --annotations"}.get(data.suffix.lower())
        if kind is None:
            raise ValueError(f"{data} is a file: show draws a packed dataset (ssdzoo prepare's output) or a COCO root")
        raise ValueError(f"{data} is a {'YOLO data file' if kind == 'yolo' else 'COCO-format json'}: "
                         + pack.format(f"{kind} {data}" + (" --split NAME" if kind != "yolo" else "")))
    if is_packed_split(data) or any(data.glob("*/manifest.json")):
        return
    if (data / "Annotations").is_dir() or any(data.glob("VOC*/Annotations")):
        raise ValueError(f"{data} is a Pascal VOC folder: " + pack.format(f"voc {data}"))
    yamls = sorted(data.glob("*.yaml")) + sorted(data.glob("*.yml"))
    if yamls or (data / "labels").is_dir():
        target = yamls[0] if yamls else data / "data.yaml"
        raise ValueError(f"{data} is a YOLO dataset: " + pack.format(f"yolo {target}"))


def show_samples(data: str | Path, out: str | Path, *, cfg: Optional["Config"] = None, split: Optional[str] = None,
                 augment: bool = False, count: int = 16, seed: int = 0, cell: int = 256,
                 columns: Optional[int] = None) -> ShowResult:
    """Draw ``count`` samples of ``split`` (see ``default_split``) of ``data`` into ``out``."""
    from .config import config_from_dict
    from .data import load_dataset
    from .data.dataset import SampleKey, SkippedImage
    from .data.images import ImageFileError, decode

    if count < 1:
        raise ValueError(f"-n must be at least 1, got {count}")
    if Path(out).suffix.lower() != ".png":
        raise ValueError(f"--out {out}: expected a .png file name")
    cfg = cfg or config_from_dict({"classes": None, "num_classes": None})
    check_showable(data)
    split = split or default_split(data, cfg)
    dataset = load_dataset(data, cfg, train=augment, split=split)
    dataset.skip_unreadable = True  # a damaged image: logged with its name and left out
    if len(dataset) == 0:
        raise ValueError(f"{dataset.source}: no images to show")
    names = ["background", *(c["name"] for c in dataset.categories)]
    rng = np.random.default_rng(seed)
    indices = sorted(rng.choice(len(dataset), size=min(count, len(dataset)), replace=False).tolist())
    cells, total, drawn, skipped = [], 0, [], []
    for i in indices:
        if augment:
            sample = dataset[SampleKey(i, 0, seed)]
            if isinstance(sample, SkippedImage):
                skipped.append(sample)
                continue
            pixels = _denormalized(sample.image, cfg)
            h, w = pixels.shape[:2]
            boxes = (sample.boxes_xyxy.numpy() * np.array([w, h, w, h], np.float32)).tolist()
            labels = sample.labels.tolist()
        else:
            try:
                pixels = decode(dataset.images.read(i)).image.permute(1, 2, 0).numpy()
            except (OSError, ValueError, ImageFileError) as err:  # as the dataset's items report it
                file_name = dataset.index.file_names[i].as_py()
                log.warning("%s: image %s cannot be decoded (%s): skipped", dataset.source, file_name, err)
                skipped.append(SkippedImage(i, file_name, str(err)))
                continue
            boxes_xyxy, label_array = dataset.index.boxes_of(i)
            boxes, labels = boxes_xyxy.tolist(), label_array.tolist()
        total += len(labels)
        image = Image.fromarray(np.ascontiguousarray(pixels))
        scale = cell / max(image.size)
        if scale != 1:  # draw at the cell's size, so that lines and labels have one size in the grid
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.BILINEAR)
            boxes = [[v * scale for v in box] for box in boxes]
        boxes_text = "1 box" if len(labels) == 1 else f"{len(labels)} boxes"
        caption = f"{Path(dataset.index.file_names[i].as_py()).name} ({boxes_text})"
        cells.append((draw_boxes(image, boxes, labels, names), caption))
        drawn.append(i)
    if not cells:
        raise ValueError(f"{dataset.source}: none of the {len(indices)} images drawn could be decoded "
                         f"(first: {skipped[0].file_name}: {skipped[0].reason})")
    path = _save_grid(cells, out, cell=cell, columns=columns)
    return ShowResult(path, dataset.source, drawn, total)


def _denormalized(image: torch.Tensor, cfg: "Config") -> np.ndarray:
    """(3, H, W) normalized float -> (H, W, 3) uint8."""
    mean = torch.tensor(cfg.mean)[:, None, None]
    std = torch.tensor(cfg.std)[:, None, None]
    pixels = ((image * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(1, 2, 0).numpy()


def _fitted(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text``, shortened at the front with "..." until it is at most ``width`` pixels wide."""
    shown = text
    while len(shown) > 4 and draw.textlength(shown, font=font) > width:
        text = text[1:]
        shown = "..." + text
    return shown


def _save_grid(cells: list[tuple[Image.Image, str]], out: str | Path, *, cell: int, columns: Optional[int]) -> Path:
    columns = columns or min(len(cells), max(4, math.ceil(math.sqrt(len(cells)))))
    rows = math.ceil(len(cells) / columns)
    pad = 4
    grid = Image.new("RGB", (columns * (cell + pad) + pad, rows * (cell + CAPTION_HEIGHT + pad) + pad), (32, 32, 32))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=11)
    for k, (image, caption) in enumerate(cells):
        x = pad + (k % columns) * (cell + pad)
        y = pad + (k // columns) * (cell + CAPTION_HEIGHT + pad)
        grid.paste(image, (x + (cell - image.width) // 2, y + (cell - image.height) // 2))
        draw.text((x + 2, y + cell + 2), _fitted(draw, caption, font, cell - 4), fill=(230, 230, 230), font=font)
    path = Path(out)
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG", optimize=True)
    return path
