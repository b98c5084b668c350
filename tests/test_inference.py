"""The inference path: preprocess, Predictor (model in memory, checkpoint), batching, thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ssdzoo
from ssdzoo.export import synthetic_images
from ssdzoo.inference import ImageReadError, Predictor, load_image, preprocess

SIZES_HW = ((48, 64), (96, 80), (64, 64))


@pytest.fixture(scope="module")
def images():
    return synthetic_images(seed=1, sizes_hw=SIZES_HW)


def test_preprocess_is_the_eval_pipeline(cfg, images):
    """``ssdzoo predict`` sees an image as ``ssdzoo eval`` does (same resize and normalization)."""
    import io

    from ssdzoo.data.transforms import eval_transform

    batch, image_hw = preprocess(images, cfg)
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == torch.float32
    assert image_hw.tolist() == [list(hw) for hw in SIZES_HW]
    png = io.BytesIO()
    Image.fromarray(images[1]).save(png, format="PNG")
    no_boxes = np.zeros((0, 4), np.float32)
    expected = eval_transform(png.getvalue(), no_boxes, np.zeros(0, np.int64), image_hw=SIZES_HW[1],
                              size_hw=(64, 64), mean=cfg.mean, std=cfg.std).image
    torch.testing.assert_close(batch[1], expected, rtol=0, atol=0)
    # and that resize is PIL's bilinear filter to within one grey level
    resized = np.asarray(Image.fromarray(images[1]).resize((64, 64), Image.Resampling.BILINEAR))
    mean, std = np.array(cfg.mean), np.array(cfg.std)
    pil = ((resized / 255.0 - mean) / std).transpose(2, 0, 1)
    assert np.abs(batch[1].numpy() - pil).max() <= 1 / 255 / std.min() + 1e-5


def test_preprocess_accepts_paths_pil_images_and_grayscale(cfg, images, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(images[0]).save(path)
    gray = images[0][:, :, 0]
    batch, image_hw = preprocess([path, str(path), Image.fromarray(images[0]), images[0]], cfg)
    for i in range(1, 4):
        torch.testing.assert_close(batch[i], batch[0], atol=0, rtol=0)
    assert load_image(gray).shape == (48, 64, 3)
    assert (load_image(Image.fromarray(gray)) == load_image(gray)).all()


def test_bad_images_are_clear_errors(tmp_path):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a picture")
    with pytest.raises(ImageReadError, match="notes.jpg"):
        load_image(not_image)
    with pytest.raises(ImageReadError, match="uint8"):
        load_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageReadError, match=r"\(4, 4, 2\)"):
        load_image(np.zeros((4, 4, 2), np.uint8))


def test_predictor_equals_model_decode_postprocess(cfg, model, images):
    detections = Predictor(cfg, model).predict(images)

    batch, image_hw = preprocess(images, cfg)
    with torch.no_grad():
        loc, logits = model(batch)
    boxes_xyxy = ssdzoo.decode(loc, ssdzoo.default_boxes(cfg), cfg)
    expected = ssdzoo.postprocess(boxes_xyxy, logits.sigmoid(), cfg, image_hw)

    assert len(detections) == 3
    assert sum(len(d.scores) for d in detections) > 0
    for got, want, (height, width) in zip(detections, expected, SIZES_HW):
        torch.testing.assert_close(got.boxes, want.boxes)
        torch.testing.assert_close(got.scores, want.scores)
        assert got.labels.tolist() == want.labels.tolist()
        assert got.boxes[:, [0, 2]].max() <= width and got.boxes[:, [1, 3]].max() <= height
        assert (got.scores > cfg.min_score).all()


def test_predictor_from_checkpoint_and_batching(cfg, model, images, tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": model.state_dict()}, path)
    reference = Predictor(cfg, model).predict(images)
    loaded = Predictor.from_weights(cfg, path).predict(images, batch_size=2)
    one_by_one = [Predictor(cfg, model).predict([image])[0] for image in images]
    for got, alone, want in zip(loaded, one_by_one, reference):
        assert got.labels.tolist() == want.labels.tolist() == alone.labels.tolist()
        torch.testing.assert_close(got.boxes, want.boxes)
        torch.testing.assert_close(alone.boxes, want.boxes, atol=1e-4, rtol=0)


def test_min_score_is_a_filter_of_the_default(cfg, model, images):
    """A stricter threshold before NMS keeps exactly the looser result's detections above it."""
    loose = Predictor(cfg, model).predict(images)
    strict = Predictor(cfg, model, min_score=0.4).predict(images)
    assert sum(len(d.scores) for d in strict) < sum(len(d.scores) for d in loose)
    for got, want in zip(strict, loose):
        keep = want.scores > 0.4
        torch.testing.assert_close(got.boxes, want.boxes[keep])
        assert got.labels.tolist() == want.labels[keep].tolist()


def test_predictor_rejects_bad_arguments(cfg, model, tmp_path):
    with pytest.raises(ValueError, match="min_score"):
        Predictor(cfg, model, min_score=1.5)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        Predictor.from_weights(cfg, tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="list"):
        Predictor(cfg, model).predict(np.zeros((8, 8, 3), np.uint8))
    assert Predictor(cfg, model).predict([]) == []
