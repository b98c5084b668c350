"""The seed's augmentation as joint image + box ops: crop, flip, resize, colour, normalize."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from data_helpers import encode, noise_image
from PIL import Image

from ssdzoo.data.dataset import train_transform
from ssdzoo.data.images import decode_resized
from ssdzoo.data.transforms import (CropRect, color_jitter, crop_boxes, hflip, hflip_boxes, iou_crop,
                                    iou_with_rect, normalize, resize, sample_iou_crop)


def _random_boxes(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    xy = rng.uniform(0, 1, size=(n, 2)) * [width - 2, height - 2]
    wh = 1 + rng.uniform(0, 0.6, size=(n, 2)) * [width, height]
    boxes = np.concatenate([xy, np.minimum(xy + wh, [width, height])], axis=1)
    return np.round(boxes).astype(np.float32)


def test_crop_keeps_exactly_the_boxes_whose_centres_fall_inside():
    rng = np.random.default_rng(0)
    cropped_any = 0
    for trial in range(300):
        height, width = rng.integers(20, 200, size=2)
        boxes = _random_boxes(rng, int(rng.integers(1, 12)), height, width)
        labels = np.arange(1, len(boxes) + 1)
        rect = sample_iou_crop(boxes, height=height, width=width, rng=rng)
        if rect is None:
            continue
        cropped_any += 1
        assert 0 <= rect.x0 < rect.x1 <= width and 0 <= rect.y0 < rect.y1 <= height
        kept_boxes, kept_labels = crop_boxes(boxes, labels, rect)
        inside = [k + 1 for k, (x1, y1, x2, y2) in enumerate(boxes.tolist())
                  if rect.x0 < (x1 + x2) / 2 < rect.x1 and rect.y0 < (y1 + y2) / 2 < rect.y1]
        assert kept_labels.tolist() == inside and len(inside) >= 1
        crop_w, crop_h = rect.x1 - rect.x0, rect.y1 - rect.y0
        assert (kept_boxes >= 0).all() and (kept_boxes[:, [0, 2]] <= crop_w).all()
        assert (kept_boxes[:, [1, 3]] <= crop_h).all()
        assert (kept_boxes[:, 2:] > kept_boxes[:, :2]).all()  # centre inside: never empty
    assert cropped_any > 150  # about 5 in 6 draws pick a minimum IoU


def test_crop_obeys_the_seed_iou_rule():
    rng = np.random.default_rng(1)
    for _ in range(200):
        boxes = _random_boxes(rng, 6, 100, 120)
        rect = sample_iou_crop(boxes, height=100, width=120, rng=rng, min_ious=(0.5,))
        if rect is None:
            continue
        overlap = iou_with_rect(boxes, rect)
        touching = overlap[overlap > 0]
        assert not (touching.min() < 0.5 and touching.max() > 0.7)
        w, h = rect.x1 - rect.x0, rect.y1 - rect.y0
        assert 0.5 * w - 1 <= h <= 2 * w + 1  # the seed's aspect limit, up to whole-pixel rounding
        assert w >= 0.3 * 120 - 1 and h >= 0.3 * 100 - 1


def test_no_crop_keeps_the_image():
    boxes = np.array([[1, 1, 5, 5]], np.float32)
    rng = np.random.default_rng(0)
    assert sample_iou_crop(boxes, height=10, width=10, rng=rng, min_ious=(None,)) is None


def test_iou_crop_of_a_decoded_image_matches_the_rect():
    image = noise_image(0, size=(80, 60))
    boxes = np.array([[10, 10, 40, 30], [50, 20, 75, 55]], np.float32)
    for seed in range(20):
        cropped, kept, labels = iou_crop(image, boxes, np.array([1, 2]), np.random.default_rng(seed))
        rect = sample_iou_crop(boxes, height=60, width=80, rng=np.random.default_rng(seed))
        expected = image if rect is None else image.crop(rect)
        assert np.array_equal(np.asarray(cropped), np.asarray(expected))
        assert ((kept >= 0) & (kept <= np.array([cropped.width, cropped.height] * 2))).all()


def test_flip_twice_is_the_identity_and_stays_inside():
    rng = np.random.default_rng(2)
    image = noise_image(3, size=(37, 23))
    boxes = _random_boxes(rng, 8, 23, 37)
    flipped_image, flipped_boxes = hflip(image, boxes)
    assert ((flipped_boxes >= 0) & (flipped_boxes <= np.array([37, 23, 37, 23]))).all()
    assert (flipped_boxes[:, 2:] >= flipped_boxes[:, :2]).all()
    again_image, again_boxes = hflip(flipped_image, flipped_boxes)
    assert np.array_equal(np.asarray(again_image), np.asarray(image))
    np.testing.assert_array_equal(again_boxes, boxes)
    # the pixels under a box move with it
    x1, y1, x2, y2 = boxes[0].astype(int)
    fx1 = int(flipped_boxes[0, 0])
    assert np.array_equal(np.asarray(image)[y1:y2, x1:x2][:, ::-1], np.asarray(flipped_image)[y1:y2, fx1:fx1 + x2 - x1])
    boxes_norm = boxes / 37  # 1 - (1 - x) is x only up to float32 rounding
    np.testing.assert_allclose(hflip_boxes(hflip_boxes(boxes_norm, width=1.0), width=1.0), boxes_norm, atol=1e-7)


def test_resize_scales_boxes():
    image = noise_image(4, size=(40, 20))
    resized, boxes = resize(image, np.array([[4, 2, 20, 10]], np.float32), (30, 60))
    assert resized.size == (60, 30)
    np.testing.assert_allclose(boxes, [[6, 3, 30, 15]])


def test_color_jitter_is_reproducible_and_bounded():
    image = noise_image(5, size=(32, 32))
    a = color_jitter(image, np.random.default_rng(7))
    b = color_jitter(image, np.random.default_rng(7))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    ratios = []
    for seed in range(30):
        bright = color_jitter(image, np.random.default_rng(seed), contrast=0.0, saturation=0.0)
        ratios.append(np.asarray(bright, np.float64).mean() / np.asarray(image, np.float64).mean())
    assert 0.55 < min(ratios) < 0.8 and 1.2 < max(ratios) < 1.45
    grey = color_jitter(image, np.random.default_rng(0), brightness=0.0, contrast=0.0, saturation=1.0)
    assert grey.size == image.size


def test_normalize_matches_the_formula():
    image = noise_image(6, size=(5, 4))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = normalize(image, mean=mean, std=std)
    expected = (torch.tensor(np.asarray(image), dtype=torch.float64).permute(2, 0, 1) / 255
                - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert out.shape == (3, 4, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected.float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("crop", [None, (40, 16, 360, 280), (41, 17, 361, 283)])
def test_reduced_scale_decode_matches_a_full_decode(crop):
    image = noise_image(8, size=(50, 38)).resize((400, 300), Image.Resampling.BICUBIC)
    data = encode(image)
    fast = np.asarray(decode_resized(data, size_hw=(64, 64), crop_xyxy=crop), np.float64)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    x0, y0, x1, y1 = crop or (0, 0, 400, 300)
    errors = {}
    for shift in (-1, 0, 1) if crop else (0,):  # the best match is unshifted: no misregistration
        box = (x0 + shift, y0, x1 + shift, y1)
        reference = np.asarray(full.resize((64, 64), Image.Resampling.BILINEAR, box=box), np.float64)
        errors[shift] = np.abs(fast - reference).mean()
    assert fast.shape == (64, 64, 3) and errors[0] < 3.0 and errors[0] == min(errors.values())


def test_reduced_scale_decode_uses_draft_mode(monkeypatch):
    from PIL import JpegImagePlugin

    real, drafts = JpegImagePlugin.JpegImageFile.draft, []

    def recording_draft(self, mode, size):
        drafts.append(real(self, mode, size))
        return drafts[-1]

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    data = encode(noise_image(9, size=(400, 300)))
    decode_resized(data, size_hw=(64, 64))  # 400x300 -> 64x64 allows 1/4 scale
    assert drafts and drafts[0][1][2:] == (100, 75)
    drafts.clear()
    decode_resized(data, size_hw=(64, 64), crop_xyxy=(0, 0, 100, 100))  # a 100 px crop: full scale
    assert not drafts


def test_train_transform_gives_normalized_boxes_and_is_reproducible():
    data = encode(noise_image(10, size=(120, 90)))
    boxes = np.array([[10, 10, 60, 50], [70, 20, 110, 85], [5, 60, 20, 80]], np.float32)
    labels = np.array([1, 2, 3])
    for seed in range(40):
        image, boxes_norm, kept = train_transform(data, boxes, labels, image_hw=(90, 120), size_hw=(48, 64),
                                                  rng=np.random.default_rng(seed))
        assert image.size == (64, 48) and len(kept) >= 1 and set(kept.tolist()) <= {1, 2, 3}
        assert ((boxes_norm >= 0) & (boxes_norm <= 1)).all() and (boxes_norm[:, 2:] > boxes_norm[:, :2]).all()
        again = train_transform(data, boxes, labels, image_hw=(90, 120), size_hw=(48, 64),
                                rng=np.random.default_rng(seed))
        assert np.array_equal(np.asarray(image), np.asarray(again[0])) and np.array_equal(boxes_norm, again[1])


def test_crop_rect_is_whole_pixels():
    rect = CropRect(1, 2, 3, 4)
    assert Image.new("RGB", (5, 5)).crop(rect).size == (2, 2)
