"""The seed's augmentation: its drawn parameters (crop, flip, colour), the boxes they give,
and the CPU executor that training runs (decode, resize, flip, colour, normalize)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from data_helpers import encode, noise_image, oriented_jpeg
from PIL import Image, ImageOps

from ssdzoo.data.images import CropRect, decode
from ssdzoo.data.transforms import (BRIGHTNESS, CONTRAST, NO_JITTER, SATURATION, Augmentation, apply_augmentation,
                                    color_jitter_, crop_boxes, draw_augmentation, eval_transform, hflip_boxes,
                                    iou_with_rect, normalize, resize_image, sample_iou_crop, train_transform)


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def _decode(data: bytes, crop=None, size_hw=None) -> np.ndarray:
    """(h, w, 3) uint8 of images.decode."""
    return decode(data, crop=crop, size_hw=size_hw).image.permute(1, 2, 0).numpy()


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


_UNIT = dict(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))  # normalize = identity on [0, 255]


def test_train_transform_is_the_drawn_augmentation_applied():
    """Training's transform = draw_augmentation (boxes, labels) + apply_augmentation (pixels);
    the crop is the seed's IoU crop widened to the decode scale's grid."""
    data = encode(noise_image(0, size=(400, 300)))
    boxes = np.array([[10, 10, 140, 130], [250, 120, 375, 255]], np.float32)
    kw = dict(image_hw=(300, 400), size_hw=(64, 64))
    cropped = 0
    for seed in range(20):
        out = train_transform(data, boxes, np.array([1, 2]), rng=np.random.default_rng(seed), **kw, **_UNIT)
        drawn = draw_augmentation(boxes, np.array([1, 2]), rng=np.random.default_rng(seed), **kw)
        image = apply_augmentation(data, drawn.augmentation, size_hw=(64, 64), **_UNIT)
        assert image.equal(out.image) and np.array_equal(drawn.boxes_xyxy_norm, out.boxes_xyxy_norm)
        assert np.array_equal(drawn.labels, out.labels)
        rect = sample_iou_crop(boxes, height=300, width=400, rng=np.random.default_rng(seed))
        crop, scale = drawn.augmentation.crop, drawn.augmentation.decode_scale
        if rect is None:
            assert crop == CropRect(0, 0, 400, 300)
            continue
        cropped += 1
        assert crop.x0 <= rect.x0 < rect.x0 + scale and crop.y0 <= rect.y0 < rect.y0 + scale
        assert rect.x1 <= crop.x1 < rect.x1 + scale and rect.y1 <= crop.y1 < rect.y1 + scale
        assert crop.x0 % scale == 0 and crop.y0 % scale == 0
    assert cropped >= 10


def test_draw_augmentation_keeps_the_seed_draw_order():
    """The crop, then the flip, then the colour order and factors: one generator, in this
    order, so the item's seed alone decides every choice."""
    boxes = np.array([[10, 10, 40, 30]], np.float32)
    for seed in range(10):
        drawn = draw_augmentation(boxes, np.array([1]), image_hw=(60, 80), size_hw=(60, 80),
                                  rng=np.random.default_rng(seed), resize_mode="bilinear")
        rng = np.random.default_rng(seed)
        sample_iou_crop(boxes, height=60, width=80, rng=rng)
        assert drawn.augmentation.flip == (rng.uniform() < 0.5)
        order = rng.permutation(3)
        assert drawn.augmentation.jitter_order == tuple(order)
        assert drawn.augmentation.jitter_factors == tuple(rng.uniform(0.6, 1.4) for _ in order)


def test_background_image_draws_a_crop_and_no_boxes():
    empty = np.zeros((0, 4), np.float32)
    crops = set()
    for seed in range(30):
        drawn = draw_augmentation(empty, np.zeros(0, np.int64), image_hw=(90, 120), size_hw=(32, 32),
                                  rng=np.random.default_rng(seed))
        assert drawn.boxes_xyxy_norm.shape == (0, 4) and drawn.labels.shape == (0,)
        crops.add(drawn.augmentation.crop)
    assert len(crops) > 10  # background images are cropped too


def test_flip_mirrors_the_pixels_and_the_boxes():
    data = encode(noise_image(3, size=(37, 23)))
    rng = np.random.default_rng(2)
    boxes = _random_boxes(rng, 8, 23, 37)
    plain = Augmentation(CropRect(0, 0, 37, 23), 1, False, *NO_JITTER)
    image = apply_augmentation(data, plain, size_hw=(23, 37), **_UNIT)
    mirrored = apply_augmentation(data, plain._replace(flip=True), size_hw=(23, 37), **_UNIT)
    assert mirrored.equal(image.flip(-1))
    flipped_boxes = hflip_boxes(boxes, width=37)
    assert ((flipped_boxes >= 0) & (flipped_boxes <= np.array([37, 23, 37, 23]))).all()
    assert (flipped_boxes[:, 2:] >= flipped_boxes[:, :2]).all()
    np.testing.assert_array_equal(hflip_boxes(flipped_boxes, width=37), boxes)
    x1, y1, x2, y2 = boxes[0].astype(int)  # the pixels under a box move with it
    fx1 = int(flipped_boxes[0, 0])
    assert image[:, y1:y2, x1:x2].flip(-1).equal(mirrored[:, y1:y2, fx1:fx1 + x2 - x1])
    boxes_norm = boxes / 37  # 1 - (1 - x) is x only up to float32 rounding
    np.testing.assert_allclose(hflip_boxes(hflip_boxes(boxes_norm, width=1.0), width=1.0), boxes_norm, atol=1e-7)


def test_resize_matches_pil():
    pil = noise_image(4, size=(40, 20))
    resized = resize_image(_tensor(pil), (30, 60))
    assert resized.shape == (3, 30, 60) and resized.dtype == torch.uint8
    down = resize_image(_tensor(pil), (10, 16))  # antialiased, as PIL's
    reference = _tensor(pil.resize((16, 10), Image.Resampling.BILINEAR))
    assert (down.int() - reference.int()).abs().max() <= 1


def test_color_jitter_is_bounded_and_brightness_scales():
    image = _tensor(noise_image(5, size=(32, 32))).float()
    for seed in range(10):
        drawn = draw_augmentation(np.zeros((0, 4), np.float32), np.zeros(0), image_hw=(32, 32), size_hw=(32, 32),
                                  rng=np.random.default_rng(seed))
        out = color_jitter_(image.clone(), drawn.augmentation.jitter_order, drawn.augmentation.jitter_factors)
        assert out.min() >= 0 and out.max() <= 255
        assert all(0.6 <= f <= 1.4 for f in drawn.augmentation.jitter_factors)
    for factor in (0.6, 1.4):
        bright = color_jitter_(image.clone(), (BRIGHTNESS, CONTRAST, SATURATION), (factor, 1.0, 1.0))
        ratio = float(bright.mean() / image.mean())
        assert abs(ratio - factor) < 0.02 or (factor > 1 and ratio < factor)  # clamped at 255


def test_color_jitter_matches_pil_enhance():
    from PIL import ImageEnhance

    pil = noise_image(11, size=(24, 16))
    for k, enhancer in enumerate((ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)):
        for factor in (0.7, 1.3):
            factors = [1.0, 1.0, 1.0]
            factors[k] = factor
            ours = color_jitter_(_tensor(pil).float(), (BRIGHTNESS, CONTRAST, SATURATION), factors)
            expected = _tensor(enhancer(pil).enhance(factor))
            assert (ours - expected.float()).abs().max() <= 1.5  # PIL rounds to uint8


def test_normalize_matches_the_formula():
    image = _tensor(noise_image(6, size=(5, 4)))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = normalize(image, mean=mean, std=std)
    expected = (image.double() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert out.shape == (3, 4, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected.float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("crop", [None, CropRect(40, 16, 360, 280), CropRect(41, 17, 361, 283)])
def test_reduced_scale_decode_matches_a_full_decode(crop):
    image = noise_image(8, size=(50, 38)).resize((400, 300), Image.Resampling.BICUBIC)
    data = encode(image)
    decoded = decode(data, crop=crop, size_hw=(64, 64))
    widened = {None: CropRect(0, 0, 400, 300), CropRect(40, 16, 360, 280): CropRect(40, 16, 360, 280),
               CropRect(41, 17, 361, 283): CropRect(40, 16, 364, 284)}  # to multiples of the scale
    assert decoded.scale == 4 and decoded.crop == widened[crop]
    fast = resize_image(decoded.image, (64, 64))
    full = Image.open(io.BytesIO(data)).convert("RGB")
    x0, y0, x1, y1 = decoded.crop
    errors = {}
    for shift in (-1, 0, 1) if crop else (0,):  # the best match is unshifted: no misregistration
        reference = np.asarray(full.resize((64, 64), Image.Resampling.BILINEAR, box=(x0 + shift, y0, x1 + shift, y1)))
        errors[shift] = np.abs(fast.permute(1, 2, 0).numpy().astype(float) - reference).mean()
    assert errors[0] < 3.0 and errors[0] == min(errors.values())


def test_full_scale_decode_is_exact():
    image = noise_image(12, size=(60, 40))
    data = encode(image)
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(_decode(data), reference)
    np.testing.assert_array_equal(_decode(data, CropRect(5, 6, 50, 30), (30, 30)), reference[6:30, 5:50])
    png = encode(image, "PNG")
    assert decode(png, size_hw=(8, 8)).scale == 1  # only JPEGs have DCT scaling
    gray = encode(noise_image(13, mode="L"))
    assert decode(gray).image.shape == (3, 32, 40)


def test_reduced_scale_only_where_the_output_size_allows():
    data = encode(noise_image(9, size=(400, 300)))
    decoded = decode(data, size_hw=(64, 64))  # 300 // 64 = 4: decoded at 1/4
    assert decoded.scale == 4 and decoded.image.shape == (3, 75, 100)
    decoded = decode(data, crop=CropRect(0, 0, 100, 100), size_hw=(64, 64))  # a 100 px crop: 1/1
    assert decoded.scale == 1 and decoded.image.shape == (3, 100, 100)
    assert decode(data, size_hw=(151, 64)).scale == 1


def test_train_transform_gives_normalized_boxes_and_is_reproducible():
    data = encode(noise_image(10, size=(120, 90)))
    boxes = np.array([[10, 10, 60, 50], [70, 20, 110, 85], [5, 60, 20, 80]], np.float32)
    labels = np.array([1, 2, 3])
    kw = dict(image_hw=(90, 120), size_hw=(48, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    for seed in range(40):
        out = train_transform(data, boxes, labels, rng=np.random.default_rng(seed), **kw)
        assert out.image.shape == (3, 48, 64) and len(out.labels) >= 1 and set(out.labels.tolist()) <= {1, 2, 3}
        assert ((out.boxes_xyxy_norm >= 0) & (out.boxes_xyxy_norm <= 1)).all()
        assert (out.boxes_xyxy_norm[:, 2:] > out.boxes_xyxy_norm[:, :2]).all()
        assert out.image.min() >= -2 and out.image.max() <= 2  # (x / 255 - 0.5) / 0.25
        again = train_transform(data, boxes, labels, rng=np.random.default_rng(seed), **kw)
        assert out.image.equal(again.image) and np.array_equal(out.boxes_xyxy_norm, again.boxes_xyxy_norm)


def test_train_transform_at_reduced_scale_keeps_boxes_on_their_pixels():
    """A 4x-downscaled decode of a crop: each box still frames its object."""
    pixels = np.full((400, 480, 3), 30, np.uint8)
    boxes = np.array([[40, 60, 200, 180], [260, 200, 440, 380]], np.float32)
    for x1, y1, x2, y2 in boxes.astype(int):
        pixels[y1:y2, x1:x2] = 220
    data = encode(Image.fromarray(pixels))
    kw = dict(image_hw=(400, 480), size_hw=(32, 32), mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
    for seed in range(25):
        out = train_transform(data, boxes, np.array([1, 2]), rng=np.random.default_rng(seed), **kw)
        for x1, y1, x2, y2 in (out.boxes_xyxy_norm * 32).round().astype(int):
            inside = out.image[:, y1 + 1:y2 - 1, x1 + 1:x2 - 1]
            assert inside.numel() == 0 or inside.mean() > out.image.mean()  # brighter than the image


def test_eval_transform_is_resize_and_normalize():
    data = encode(noise_image(14, size=(64, 48)))  # to 40x30: no reduced-scale decoding
    out = eval_transform(data, np.array([[8, 12, 32, 24]], np.float32), np.array([2]), image_hw=(48, 64),
                         size_hw=(30, 40), mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((40, 30), Image.Resampling.BILINEAR))
    assert np.abs(out.image.permute(1, 2, 0).numpy() - reference).max() <= 1.01
    np.testing.assert_allclose(out.boxes_xyxy_norm, [[0.125, 0.25, 0.5, 0.5]])
    assert out.labels.tolist() == [2]


@pytest.mark.parametrize("orientation", [2, 3, 6, 7, 8])
@pytest.mark.parametrize("stored_wh", [(400, 304), (403, 301)])
def test_reduced_scale_decode_of_a_turned_jpeg_stays_on_the_upright_grid(orientation, stored_wh):
    # a mirrored axis whose size is not a multiple of the scale puts the short block of the
    # scaled decode at the start of the upright axis: such images decode at full scale
    w, h = stored_wh if orientation < 5 else stored_wh[::-1]
    data = oriented_jpeg(noise_image(14, size=(50, 38)).resize((w, h), Image.Resampling.BICUBIC), orientation)
    assert Image.open(io.BytesIO(data)).size == stored_wh
    decoded = decode(data, size_hw=(64, 64))
    assert decoded.scale == (4 if stored_wh == (400, 304) else 1) and decoded.crop == CropRect(0, 0, w, h)
    full = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    mine = decoded.image.permute(1, 2, 0).numpy().astype(float)
    if decoded.scale == 1:
        np.testing.assert_array_equal(mine, full)
    else:  # each decoded pixel is close to the mean of its 4x4 block of the upright image
        blocks = full.reshape(h // 4, 4, w // 4, 4, 3).mean(axis=(1, 3))
        error = np.abs(mine - blocks).mean()
        assert error < 3.0 and error < np.abs(np.roll(mine, 1, axis=1) - blocks).mean() / 2
