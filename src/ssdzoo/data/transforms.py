"""The seed's SSD augmentation as functional joint image + box ops; each returns new objects.

Images are PIL RGB images; boxes are (G, 4) float32 numpy corners in pixels of the image they
go with. Randomness comes only from the numpy Generator passed in.

The seed's training order: random IoU crop, resize to the input size (aspect not kept),
horizontal flip with probability 0.5, colour jitter (brightness, contrast, saturation 0.4 in
random order), normalize. The crop is decided from the boxes and the image size alone
(``sample_iou_crop``), so the loader can decode only what the crop keeps, at a reduced scale
(``images.decode_resized``) instead of decoding the whole image first.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch import Tensor

# The seed's random_sample_crop: a minimum IoU drawn from these (None: keep the whole image),
# up to 50 tries of a crop 0.3..1 of each side with height/width between 0.5 and 2.
SEED_MIN_IOUS = (None, 0.1, 0.3, 0.5, 0.7, 0.9)
SEED_CROP_TRIALS = 50
SEED_CROP_MIN_SIDE = 0.3
SEED_CROP_ASPECT = (0.5, 2.0)
SEED_IOU_MARGIN = 0.2  # a crop is refused if its IoUs span below min_iou to above min_iou + 0.2
SEED_FLIP_PROBABILITY = 0.5
SEED_JITTER = 0.4  # brightness, contrast and saturation factors drawn from [0.6, 1.4]


class CropRect(NamedTuple):
    """A crop in whole pixels: columns x0..x1, rows y0..y1 (end exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int


def iou_with_rect(boxes_xyxy: np.ndarray, rect: CropRect) -> np.ndarray:
    """(G, 4) boxes -> (G,) IoU of each with the rectangle."""
    rect_xyxy = np.asarray(rect, dtype=np.float32)
    top_left = np.maximum(boxes_xyxy[:, :2], rect_xyxy[:2])
    bottom_right = np.minimum(boxes_xyxy[:, 2:], rect_xyxy[2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=1)
    area_boxes = (boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]).prod(axis=1)
    area_rect = (rect_xyxy[2] - rect_xyxy[0]) * (rect_xyxy[3] - rect_xyxy[1])
    return inter / (area_boxes + area_rect - inter)


def centres_inside(boxes_xyxy: np.ndarray, rect: CropRect) -> np.ndarray:
    """(G,) bool: the box centre lies strictly inside the rectangle (the seed's test)."""
    centres = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2
    return ((centres[:, 0] > rect.x0) & (centres[:, 1] > rect.y0)
            & (centres[:, 0] < rect.x1) & (centres[:, 1] < rect.y1))


def sample_iou_crop(
    boxes_xyxy: np.ndarray, *, height: int, width: int, rng: np.random.Generator,
    min_ious: Sequence[Optional[float]] = SEED_MIN_IOUS, max_trials: int = SEED_CROP_TRIALS,
    min_side: float = SEED_CROP_MIN_SIDE, aspect_range: tuple[float, float] = SEED_CROP_ASPECT,
) -> Optional[CropRect]:
    """The seed's random IoU crop, decided from the boxes alone; None keeps the whole image.

    A candidate crop is refused when no box overlaps it, when the overlapping boxes' IoUs with
    it reach both below ``min_iou`` and above ``min_iou + 0.2``, or when no overlapping box has
    its centre inside. After ``max_trials`` refusals the whole image is kept.
    """
    min_iou = min_ious[rng.integers(len(min_ious))]
    if min_iou is None:
        return None
    for _ in range(max_trials):
        w = rng.uniform(min_side, 1.0) * width
        h = rng.uniform(min_side, 1.0) * height
        if not aspect_range[0] <= h / w <= aspect_range[1]:
            continue
        left = rng.uniform() * (width - w)
        top = rng.uniform() * (height - h)
        rect = CropRect(int(left), int(top), int(left + w), int(top + h))
        if rect.x1 <= rect.x0 or rect.y1 <= rect.y0:
            continue
        overlap = iou_with_rect(boxes_xyxy, rect)
        touching = overlap > 0
        if not touching.any():
            continue
        if overlap[touching].min() < min_iou and overlap[touching].max() > min_iou + SEED_IOU_MARGIN:
            continue
        if (centres_inside(boxes_xyxy, rect) & touching).any():
            return rect
    return None


def crop_boxes(boxes_xyxy: np.ndarray, labels: np.ndarray, rect: CropRect) -> tuple[np.ndarray, np.ndarray]:
    """Keep the boxes whose centres fall strictly inside ``rect``, clip them to it and move
    them to its coordinates. (Such a box of positive size always overlaps the crop.)"""
    keep = centres_inside(boxes_xyxy, rect)
    origin = np.array([rect.x0, rect.y0, rect.x0, rect.y0], dtype=np.float32)
    limit = np.array([rect.x1, rect.y1, rect.x1, rect.y1], dtype=np.float32)
    cropped = np.clip(boxes_xyxy[keep], origin, limit) - origin
    return cropped.astype(np.float32), labels[keep]


def iou_crop(
    image: Image.Image, boxes_xyxy: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """The seed's random IoU crop of a decoded image (the loader fuses it with decoding)."""
    rect = sample_iou_crop(boxes_xyxy, height=image.height, width=image.width, rng=rng)
    if rect is None:
        return image.copy(), boxes_xyxy.copy(), labels.copy()
    boxes, kept = crop_boxes(boxes_xyxy, labels, rect)
    return image.crop(rect), boxes, kept


def resize_boxes(boxes_xyxy: np.ndarray, *, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    scale = np.array([to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]] * 2, dtype=np.float32)
    return (boxes_xyxy * scale).astype(np.float32)


def resize(image: Image.Image, boxes_xyxy: np.ndarray, size_hw: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """Resize to (height, width) without keeping the aspect ratio, as the seed does."""
    resized = image.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
    return resized, resize_boxes(boxes_xyxy, from_hw=(image.height, image.width), to_hw=size_hw)


def hflip_boxes(boxes_xyxy: np.ndarray, *, width: float) -> np.ndarray:
    """Mirror boxes left-right in an image ``width`` wide (1.0 for normalized boxes).

    >>> hflip_boxes(np.array([[1.0, 2.0, 4.0, 3.0]], np.float32), width=10).tolist()
    [[6.0, 2.0, 9.0, 3.0]]
    """
    flipped = boxes_xyxy.copy()
    flipped[:, 0] = width - boxes_xyxy[:, 2]
    flipped[:, 2] = width - boxes_xyxy[:, 0]
    return flipped


def hflip(image: Image.Image, boxes_xyxy: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), hflip_boxes(boxes_xyxy, width=image.width)


def random_hflip(
    image: Image.Image, boxes_xyxy: np.ndarray, rng: np.random.Generator, *,
    probability: float = SEED_FLIP_PROBABILITY,
) -> tuple[Image.Image, np.ndarray]:
    if rng.uniform() < probability:
        return hflip(image, boxes_xyxy)
    return image, boxes_xyxy


def color_jitter(
    image: Image.Image, rng: np.random.Generator, *, brightness: float = SEED_JITTER,
    contrast: float = SEED_JITTER, saturation: float = SEED_JITTER,
) -> Image.Image:
    """Brightness, contrast and saturation, each by a factor from [1 - x, 1 + x], in random
    order (as MindSpore's RandomColorAdjust). Each is a blend in uint8 with black, the mean
    grey and the greyscale image respectively."""
    enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    spreads = (brightness, contrast, saturation)
    for k in rng.permutation(3):
        factor = rng.uniform(max(0.0, 1.0 - spreads[k]), 1.0 + spreads[k])
        image = enhancers[k](image).enhance(factor)
    return image


def normalize(image: Image.Image, *, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 ``(x / 255 - mean) / std``."""
    array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    array = array.view(image.height, image.width, 3).permute(2, 0, 1)
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    return array.float().mul_(1.0 / (255.0 * std_t)).sub_(mean_t / std_t)
