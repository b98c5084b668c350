"""The legacy bilinear resize of TensorFlow 1 and MindSpore, which trained models expect.

TF1's ``ResizeBilinear`` (``align_corners=False``, ``half_pixel_centers=False``; what the TF
Object Detection API resizes its inputs with) and MindSpore's ResizeBilinear v1 (the seed's FPN
upsampling) sample destination pixel ``d`` at source coordinate ``d * in / out``: no half-pixel
centres, no antialiasing, the last source row repeated past the edge. Upscaling by 2 therefore
shifts the picture by half a source pixel against PyTorch's ``F.interpolate``, and downscaling a
photo aliases where PIL's filter would smooth.

``legacy_taps`` gives the two source indices and the weight of the second for each destination
pixel; ``resize_legacy`` applies them along both axes of an image; ``legacy_matrix`` writes them
as an (out, in) matrix for layers that resize by matrix products.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor


@lru_cache(maxsize=64)
def legacy_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, frac) for each of ``size_out`` destination pixels: the value is
    ``x[low] + (x[high] - x[low]) * frac``, source coordinate ``d * size_in / size_out``.

    Computed and cached in numpy, outside torch: a tensor made while torch.export traces a
    model is a fake tensor, and a cached one would break every later eager call.

    >>> [t.tolist() for t in legacy_taps(2, 4)]
    [[0, 0, 1, 1], [1, 1, 1, 1], [0.0, 0.5, 0.0, 0.5]]
    """
    src = np.arange(size_out, dtype=np.float64) * (size_in / size_out)
    low = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (src - low).astype(np.float32)


@lru_cache(maxsize=64)
def legacy_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(out, in) float32 interpolation weights of ``legacy_taps``."""
    low, high, frac = legacy_taps(size_in, size_out)
    weights = np.zeros((size_out, size_in), dtype=np.float64)
    rows = np.arange(size_out)
    weights[rows, low] += 1 - frac
    weights[rows, high] += frac
    return weights.astype(np.float32)


def resize_legacy(image: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """(C, h, w) (uint8 or float) -> (C, H, W) float32, TF1's legacy bilinear resize.

    As TF's kernel: interpolate along x in the top and bottom source rows, then along y;
    two gathers per axis, so the cost follows the output, not the (often large) input.
    """
    height, width = size_hw
    image = image.to(torch.float32)
    y_low, y_high, y_frac = (torch.from_numpy(t) for t in legacy_taps(image.shape[-2], height))
    x_low, x_high, x_frac = (torch.from_numpy(t) for t in legacy_taps(image.shape[-1], width))
    top, bottom = image[..., y_low, :], image[..., y_high, :]  # (C, H, w)

    def along_x(rows: Tensor) -> Tensor:
        left, right = rows[..., x_low], rows[..., x_high]  # (C, H, W)
        return left + (right - left) * x_frac

    top, bottom = along_x(top), along_x(bottom)
    return top + (bottom - top) * y_frac[:, None]
