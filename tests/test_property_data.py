"""Property-based tests (hypothesis) of what training reads: generated COCO exports (0 to 50
boxes, zero-area and degenerate boxes, boxes partly or wholly outside the image, crowd-only
images; 1x1 and 4000x60 images; grayscale, CMYK and progressive JPEGs, 16-bit, palette with
transparency and RGBA PNGs, BMP, TIFF, WebP; every EXIF orientation) are packed by the real
writer (``prepare_coco_export``) and read through the training dataset and loader. Invariants:
every image packs (or is counted as dropped when none of its annotations is usable) and trains (no exception, no skip), the output has the input size, boxes lie
inside the image, and a label is kept or dropped only with its box."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tiny import tiny_config

from ssdzoo.data import load_dataset, make_loader, prepare_coco_export
from ssdzoo.data.dataset import Sample

# derandomized: the same cases on every machine and run (CI stability); small counts keep the
# file well under 30 s
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

KINDS = ("jpeg", "jpeg-gray", "jpeg-cmyk", "jpeg-progressive", "png-16bit", "png-palette-transparent", "png-rgba",
         "bmp", "tiff", "webp")
SIZES = st.one_of(st.sampled_from([(1, 1), (4000, 60), (60, 4000), (2, 3)]),
                  st.tuples(st.integers(8, 160), st.integers(8, 160)))  # (width, height) as shown


def encode_image(kind: str, width: int, height: int, orientation: int, seed: int) -> tuple[bytes, str]:
    """An image of ``kind`` that a viewer shows at width x height (stored transposed for EXIF
    orientations 5-8)."""
    stored_w, stored_h = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (stored_h, stored_w, 3), dtype=np.uint8), "RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    if kind == "jpeg":
        rgb.save(out, "JPEG", quality=80, exif=exif.tobytes())
    elif kind == "jpeg-gray":
        rgb.convert("L").save(out, "JPEG", exif=exif.tobytes())
    elif kind == "jpeg-cmyk":
        rgb.convert("CMYK").save(out, "JPEG", exif=exif.tobytes())
    elif kind == "jpeg-progressive":
        rgb.save(out, "JPEG", progressive=True, exif=exif.tobytes())
    elif kind == "png-16bit":
        pixels = rng.integers(0, 65536, (stored_h, stored_w), dtype=np.uint16)
        Image.fromarray(pixels).save(out, "PNG", exif=exif.tobytes())
    elif kind == "png-palette-transparent":
        palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        palette.save(out, "PNG", transparency=0, exif=exif.tobytes())
    elif kind == "png-rgba":
        rgba = rgb.copy()
        rgba.putalpha(Image.fromarray(rng.integers(0, 256, (stored_h, stored_w), dtype=np.uint8), "L"))
        rgba.save(out, "PNG", exif=exif.tobytes())
    elif kind == "bmp":
        rgb.save(out, "BMP")  # BMP has no EXIF
    elif kind == "tiff":
        rgb.save(out, "TIFF", exif=exif.tobytes())
    elif kind == "webp":
        rgb.save(out, "WEBP", quality=80, exif=exif.tobytes())
    suffix = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "tiff": ".tif", "webp": ".webp"}[kind.split("-")[0]]
    return out.getvalue(), suffix


def _viewed_size(kind: str, width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if kind == "bmp" and orientation in (5, 6, 7, 8) else (width, height)


coordinate = st.one_of(st.floats(-200, 400, allow_nan=False, width=32), st.sampled_from([0.0, 1.0]))
extent = st.one_of(st.floats(0, 400, allow_nan=False, width=32), st.just(0.0))  # zero: a degenerate box
box = st.tuples(coordinate, coordinate, extent, extent, st.integers(1, 3), st.sampled_from([0, 0, 0, 1]))


@st.composite
def an_image(draw):
    width, height = draw(SIZES)
    kind = draw(st.sampled_from(KINDS))
    orientation = draw(st.integers(1, 8))
    boxes = draw(st.lists(box, min_size=0, max_size=50))
    if boxes and draw(st.booleans()) and draw(st.booleans()):
        boxes = [(*b[:5], 1) for b in boxes]  # crowd only
    # boxes are drawn in a 0..400 frame: scale them to the image, partly or wholly outside included
    sx, sy = width / 200, height / 200
    boxes = [(x * sx, y * sy, w * sx, h * sy, c, crowd) for x, y, w, h, c, crowd in boxes]
    return kind, width, height, orientation, boxes, draw(st.integers(0, 2**16))


def write_export(folder: Path, cases: list) -> Path:
    coco = {"images": [], "annotations": [],
            "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "triangle"}]}
    for k, (kind, width, height, orientation, boxes, seed) in enumerate(cases):
        data, suffix = encode_image(kind, width, height, orientation, seed)
        name = f"{k:03d}-{kind}-o{orientation}{suffix}"
        (folder / name).write_bytes(data)
        shown_w, shown_h = _viewed_size(kind, width, height, orientation)
        coco["images"].append({"id": k + 1, "file_name": name, "width": shown_w, "height": shown_h})
        for x, y, w, h, category, crowd in boxes:
            coco["annotations"].append({"id": len(coco["annotations"]), "image_id": k + 1, "category_id": category,
                                        "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd})
    path = folder / "_annotations.coco.json"
    path.write_text(json.dumps(coco))
    return path


def check_sample(sample, index_boxes_xyxy: np.ndarray, index_labels: np.ndarray, hw: tuple[int, int]) -> None:
    assert isinstance(sample, Sample), sample  # never a skip: every generated file is a valid image
    assert sample.image.shape == (3, 64, 64) and sample.image.dtype == torch.float32
    assert torch.isfinite(sample.image).all()
    boxes, labels = sample.boxes_xyxy.numpy(), sample.labels.numpy()
    assert boxes.shape == (len(labels), 4) and labels.dtype == np.int64
    assert ((boxes >= 0) & (boxes <= 1)).all(), boxes
    assert (boxes[:, 2:] >= boxes[:, :2]).all(), boxes
    # a label goes only with its box: the output's labels are some of the packed boxes' labels
    assert not Counter(labels.tolist()) - Counter(index_labels.tolist())
    height, width = hw
    assert ((index_boxes_xyxy >= 0) & (index_boxes_xyxy <= [width, height, width, height])).all()
    assert (index_boxes_xyxy[:, 2:] > index_boxes_xyxy[:, :2]).all()  # no zero-area box is packed
    assert np.isin(index_labels, [1, 2, 3]).all()


@SETTINGS
@given(cases=st.lists(an_image(), min_size=1, max_size=3))
def test_generated_exports_pack_whole_and_every_item_trains(cases, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    path = write_export(folder, cases)
    summary = prepare_coco_export(path, folder / "packed", split="train", workers=1, progress=False)["train"]
    # every image is packed: background images (no annotation) as such, and only an image whose
    # every annotation is unusable (zero area, outside, crowd-only) is left out, and counted
    assert not summary["skipped"], summary
    assert summary["images"] + summary["dropped_images"]["no_boxes"] == len(cases), summary
    assert summary["background_images"] >= sum(not boxes for _, _, _, _, boxes, _ in cases)
    cfg = tiny_config(f"data_dir={folder / 'packed'}", "train_split=train")
    dataset = load_dataset(folder / "packed", cfg, train=True)
    dataset.skip_unreadable = True  # as training sets it: a skip would show as a SkippedImage
    for i in range(len(dataset)):
        boxes, labels = dataset.index.boxes_of(i)
        hw = (int(dataset.index.heights[i]), int(dataset.index.widths[i]))
        for epoch in range(2):
            dataset.set_epoch(epoch)
            check_sample(dataset[i], boxes, labels, hw)


@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(cases=st.lists(an_image(), min_size=2, max_size=5))
def test_the_loader_batches_every_generated_export(cases, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    prepare_coco_export(write_export(folder, cases), folder / "packed", split="train", workers=1, progress=False)
    cfg = tiny_config(f"data_dir={folder / 'packed'}", "train_split=train", "batch_size=2")
    loader = make_loader(load_dataset(folder / "packed", cfg, train=True), cfg, train=True)
    batches = list(loader)
    assert len(batches) == len(loader.dataset) // 2
    for batch in batches:
        assert batch.images.shape == (2, 3, 64, 64) and batch.skipped.numel() == 0
        assert ((batch.boxes_xyxy >= 0) & (batch.boxes_xyxy <= 1)).all()
        assert ((batch.labels == 0) | ((batch.labels >= 1) & (batch.labels <= 3))).all()


def test_every_kind_at_every_exif_orientation_packs_upright_and_trains(tmp_path):
    """One of each kind at each orientation (48x32 as shown, one box): all pack with the size a
    viewer shows, none is skipped, and each gives a training and an evaluation item."""
    cases = [(kind, 48, 32, orientation, [(8.0, 4.0, 20.0, 12.0, 1 + k % 3, 0)], k)
             for k, (kind, orientation) in enumerate((kind, o) for kind in KINDS for o in range(1, 9))]
    path = write_export(tmp_path, cases)
    summary = prepare_coco_export(path, tmp_path / "packed", split="train", workers=1, progress=False)["train"]
    assert summary["images"] == len(cases) == 80 and not summary["skipped"], summary["skipped"][:3]
    cfg = tiny_config(f"data_dir={tmp_path / 'packed'}", "train_split=train", "val_split=train")
    train_set = load_dataset(tmp_path / "packed", cfg, train=True)
    eval_set = load_dataset(tmp_path / "packed", cfg, train=False)
    for i, (kind, _, _, orientation, _, _) in enumerate(cases):  # packed in the export's order
        width, height = _viewed_size(kind, 48, 32, orientation)  # BMP has no EXIF: stored is shown
        assert (int(train_set.index.heights[i]), int(train_set.index.widths[i])) == (height, width)
        boxes, labels = train_set.index.boxes_of(i)
        check_sample(train_set[i], boxes, labels, (height, width))
        item = eval_set[i]
        np.testing.assert_allclose(item.boxes_xyxy.numpy(), [[8 / width, 4 / height, 28 / width, 16 / height]],
                                   atol=1e-6)
