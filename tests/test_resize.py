"""TF1's legacy bilinear resize (ssdzoo.resize), against a per-pixel reading of its rule, and
the pipelines that use it (image_resize: legacy)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from ssdzoo.data.images import decode
from ssdzoo.data.transforms import eval_transform, resize_image
from ssdzoo.resize import legacy_matrix, resize_legacy


def reference(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 ResizeBilinear, align_corners=False, half_pixel_centers=False, pixel by pixel."""
    channels, in_h, in_w = image.shape
    out = np.zeros((channels, out_h, out_w))
    for y in range(out_h):
        sy = y * in_h / out_h
        y0 = min(int(np.floor(sy)), in_h - 1)
        y1, fy = min(y0 + 1, in_h - 1), sy - y0
        for x in range(out_w):
            sx = x * in_w / out_w
            x0 = min(int(np.floor(sx)), in_w - 1)
            x1, fx = min(x0 + 1, in_w - 1), sx - x0
            top = image[:, y0, x0] + (image[:, y0, x1] - image[:, y0, x0]) * fx
            bottom = image[:, y1, x0] + (image[:, y1, x1] - image[:, y1, x0]) * fx
            out[:, y, x] = top + (bottom - top) * fy
    return out


def test_legacy_resize_follows_tf1s_rule():
    image = np.random.default_rng(0).integers(0, 256, size=(3, 37, 53)).astype(np.uint8)
    for size in ((16, 16), (300, 300), (37, 53), (74, 20)):
        ours = resize_legacy(torch.from_numpy(image), size)
        assert ours.dtype == torch.float32
        np.testing.assert_allclose(ours.numpy(), reference(image.astype(np.float64), *size), atol=1e-4)
        rows, cols = legacy_matrix(37, size[0]), legacy_matrix(53, size[1])
        np.testing.assert_allclose(rows @ image.astype(np.float32) @ cols.T, ours.numpy(), atol=1e-3)


def test_legacy_evaluation_pipeline_decodes_at_full_scale():
    """No reduced-scale JPEG decoding, no antialiasing: the full image, TF1's resize."""
    pixels = np.random.default_rng(1).integers(0, 256, size=(640, 480, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    out = eval_transform(data, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), image_hw=(640, 480),
                         size_hw=(64, 64), mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode="legacy")
    full = decode(data).image
    expected = resize_image(full, (64, 64), "legacy") / 127.5 - 1
    torch.testing.assert_close(out.image, expected, atol=1e-5, rtol=0)
    antialiased = eval_transform(data, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), image_hw=(640, 480),
                                 size_hw=(64, 64), mean=(0.5,) * 3, std=(0.5,) * 3)
    assert (antialiased.image - out.image).abs().max() > 0.1  # the default pipeline is another one
