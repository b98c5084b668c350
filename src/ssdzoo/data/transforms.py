"""The seed's SSD augmentation: its parameters drawn once, and the CPU executor.

The seed's training order: random IoU crop, resize to the input size (aspect not kept),
horizontal flip with probability 0.5, colour jitter (brightness, contrast, saturation 0.4 in
random order), normalize. Every random choice depends on the boxes and the image size alone,
so ``draw_augmentation`` makes them all before any pixel is decoded and computes the boxes and
labels they give: an ``Augmentation`` that two executors run, with the same boxes and labels:

- the CPU executor here (``apply_augmentation``, what ``train_transform`` runs in the loader's
  workers): only the crop is decoded, at a reduced JPEG scale where the output size allows
  (``images.decode``); it flips the uint8 image (4x less memory traffic than float) and does
  colour and normalization in place on its own float copy;
- the device executor (``device_pipeline``): a whole batch decoded, cropped and resized,
  flipped and coloured on the training device.

Images are torch tensors (3, H, W): uint8 from the decoder, float32 in [0, 255] once colour
work starts. Boxes are (G, 4) float32 numpy corners in pixels of the image they go with.
Randomness comes only from the numpy Generator passed in.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..resize import resize_legacy
from .images import CropRect, decode, scaled_crop

# The seed's random_sample_crop: a minimum IoU drawn from these (None: keep the whole image),
# up to 50 tries of a crop 0.3..1 of each side with height/width between 0.5 and 2.
SEED_MIN_IOUS = (None, 0.1, 0.3, 0.5, 0.7, 0.9)
SEED_CROP_TRIALS = 50
SEED_CROP_MIN_SIDE = 0.3
SEED_CROP_ASPECT = (0.5, 2.0)
SEED_IOU_MARGIN = 0.2  # a crop is refused if its IoUs span below min_iou to above min_iou + 0.2
SEED_FLIP_PROBABILITY = 0.5
SEED_JITTER = 0.4  # brightness, contrast and saturation factors drawn from [0.6, 1.4]
LUMA_RGB = (0.299, 0.587, 0.114)  # ITU-R 601 grey, as PIL's and OpenCV's RGB -> L


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

    Up to ``max_trials`` candidates, each 0.3..1 of the width and height at a uniform position;
    the first one is taken that has a height/width ratio in ``aspect_range``, overlaps some box,
    does not have overlapping boxes' IoUs reaching both below ``min_iou`` and above
    ``min_iou + 0.2``, and has an overlapping box's centre inside. The seed draws and tests the
    candidates one by one; drawing all at once and taking the first that passes gives the same
    distribution in one numpy pass.
    """
    min_iou = min_ious[rng.integers(len(min_ious))]
    if min_iou is None:
        return None
    size = np.array([width, height], dtype=np.float64)
    sides = rng.uniform(min_side, 1.0, size=(max_trials, 2)) * size  # (T, 2) w, h
    corners = rng.uniform(size=(max_trials, 2)) * (size - sides)  # (T, 2) left, top
    rects = np.floor(np.concatenate([corners, corners + sides], axis=1))  # (T, 4), int() as the seed
    aspect = sides[:, 1] / sides[:, 0]
    usable = (aspect >= aspect_range[0]) & (aspect <= aspect_range[1])
    usable &= (rects[:, 2] > rects[:, 0]) & (rects[:, 3] > rects[:, 1])
    if len(boxes_xyxy) == 0:  # a background image: no box to keep or to cut, any crop does
        return _first_usable(rects, usable)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty candidates are not usable anyway
        overlap = _iou_many(boxes_xyxy.astype(np.float64), rects)  # (T, G)
    touching = overlap > 0
    lowest = np.where(touching, overlap, np.inf).min(axis=1)
    highest = np.where(touching, overlap, -np.inf).max(axis=1)
    usable &= touching.any(axis=1) & ~((lowest < min_iou) & (highest > min_iou + SEED_IOU_MARGIN))
    centres = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2  # (G, 2)
    inside = ((centres[None] > rects[:, None, :2]) & (centres[None] < rects[:, None, 2:])).all(axis=2)
    usable &= (inside & touching).any(axis=1)
    return _first_usable(rects, usable)


def _first_usable(rects: np.ndarray, usable: np.ndarray) -> Optional[CropRect]:
    """The first of the (T, 4) candidates that passed, or None (keep the whole image)."""
    if not usable.any():
        return None
    x0, y0, x1, y1 = (int(v) for v in rects[int(np.argmax(usable))])
    return CropRect(x0, y0, x1, y1)


def _iou_many(boxes_xyxy: np.ndarray, rects_xyxy: np.ndarray) -> np.ndarray:
    """(G, 4) boxes, (T, 4) rectangles -> (T, G) IoU."""
    top_left = np.maximum(boxes_xyxy[None, :, :2], rects_xyxy[:, None, :2])
    bottom_right = np.minimum(boxes_xyxy[None, :, 2:], rects_xyxy[:, None, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_boxes = (boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]).prod(axis=1)
    area_rects = (rects_xyxy[:, 2:] - rects_xyxy[:, :2]).prod(axis=1)
    return inter / (area_boxes[None] + area_rects[:, None] - inter)


def crop_boxes(boxes_xyxy: np.ndarray, labels: np.ndarray, rect: CropRect) -> tuple[np.ndarray, np.ndarray]:
    """Keep the boxes whose centres fall strictly inside ``rect``, clip them to it and move
    them to its coordinates. (Such a box of positive size always overlaps the crop.)"""
    keep = centres_inside(boxes_xyxy, rect)
    origin = np.array([rect.x0, rect.y0, rect.x0, rect.y0], dtype=np.float32)
    limit = np.array([rect.x1, rect.y1, rect.x1, rect.y1], dtype=np.float32)
    cropped = np.clip(boxes_xyxy[keep], origin, limit) - origin
    return cropped.astype(np.float32), labels[keep]


def resize_image(image: Tensor, size_hw: tuple[int, int], mode: str = "antialias") -> Tensor:
    """(3, h, w) -> (3, H, W), bilinear with antialiasing (PIL's filter; torch has a fast uint8
    kernel for it). Aspect is not kept, as in the seed. ``mode="legacy"``: TF1's bilinear
    resize instead (``ssdzoo.resize``; float32 out); ``mode="bilinear"``: half-pixel centres
    without antialiasing, torchvision's detection resize (float32 out). Config key
    ``image_resize``."""
    if tuple(image.shape[1:]) == tuple(size_hw):
        return image.clone()
    if mode == "legacy":
        return resize_legacy(image, size_hw)
    if mode == "bilinear":
        return F.interpolate(image[None].float(), size=tuple(size_hw), mode="bilinear", antialias=False,
                             align_corners=False)[0]
    return F.interpolate(image[None], size=tuple(size_hw), mode="bilinear", antialias=True,
                         align_corners=False)[0]


def hflip_boxes(boxes_xyxy: np.ndarray, *, width: float) -> np.ndarray:
    """Mirror boxes left-right in an image ``width`` wide (1.0 for normalized boxes).

    >>> hflip_boxes(np.array([[1.0, 2.0, 4.0, 3.0]], np.float32), width=10).tolist()
    [[6.0, 2.0, 9.0, 3.0]]
    """
    flipped = boxes_xyxy.copy()
    flipped[:, 0] = width - boxes_xyxy[:, 2]
    flipped[:, 2] = width - boxes_xyxy[:, 0]
    return flipped


BRIGHTNESS, CONTRAST, SATURATION = 0, 1, 2  # the colour steps, as jitter_order names them
NO_JITTER = ((BRIGHTNESS, CONTRAST, SATURATION), (1.0, 1.0, 1.0))


class Augmentation(NamedTuple):
    """One image's drawn augmentation: what either executor runs on its pixels."""

    crop: CropRect  # the region of the upright image resized to the output (the whole image: none)
    decode_scale: int  # the JPEG DCT scale the CPU executor may decode ``crop`` at (it is on its grid)
    flip: bool  # mirror left-right after resizing
    jitter_order: tuple[int, int, int]  # the colour steps in the order they run (BRIGHTNESS, ...)
    jitter_factors: tuple[float, float, float]  # each step's factor, in that order (1: no change)


class Drawn(NamedTuple):
    """An ``Augmentation`` and the boxes and labels it gives."""

    augmentation: Augmentation
    boxes_xyxy_norm: np.ndarray  # (G, 4) float32 in [0, 1] of the output image
    labels: np.ndarray  # (G,) int64


def draw_augmentation(
    boxes_xyxy: np.ndarray, labels: np.ndarray, *, image_hw: tuple[int, int], size_hw: tuple[int, int],
    rng: np.random.Generator, resize_mode: str = "antialias",
) -> Drawn:
    """The seed's training augmentation of an image of ``image_hw`` with pixel boxes, drawn from
    the boxes and the size alone: IoU crop (``sample_iou_crop``), flip with probability 0.5,
    colour jitter (brightness, contrast, saturation 0.4, in random order). With antialiased
    resizing the crop is widened by a few pixels to the grid of the JPEG scale it can be
    decoded at (``images.scaled_crop``); the boxes are those of the widened crop. The draws
    come from ``rng`` in this order, so the item's generator alone decides the result."""
    height, width = image_hw
    rect = sample_iou_crop(boxes_xyxy, height=height, width=width, rng=rng)
    crop = rect or CropRect(0, 0, width, height)
    crop, scale = scaled_crop(crop, image_hw, size_hw) if resize_mode == "antialias" else (crop, 1)
    if rect is not None:
        boxes_xyxy, labels = crop_boxes(boxes_xyxy, labels, crop)
    crop_wh = np.array([crop.x1 - crop.x0, crop.y1 - crop.y0] * 2, dtype=np.float32)
    boxes_norm = (boxes_xyxy / crop_wh).astype(np.float32)
    flip = bool(rng.uniform() < SEED_FLIP_PROBABILITY)
    if flip:
        boxes_norm = hflip_boxes(boxes_norm, width=1.0)
    order = tuple(int(k) for k in rng.permutation(3))
    factors = tuple(float(rng.uniform(max(0.0, 1.0 - SEED_JITTER), 1.0 + SEED_JITTER)) for _ in order)
    return Drawn(Augmentation(crop, scale, flip, order, factors), boxes_norm, np.array(labels, dtype=np.int64))


def eval_augmentation(boxes_xyxy: np.ndarray, labels: np.ndarray, *, image_hw: tuple[int, int],
                      size_hw: tuple[int, int], resize_mode: str = "antialias") -> Drawn:
    """Evaluation's: the whole image resized, nothing random."""
    height, width = image_hw
    crop = CropRect(0, 0, width, height)
    scale = scaled_crop(crop, image_hw, size_hw)[1] if resize_mode == "antialias" else 1
    boxes_norm = (boxes_xyxy / np.array([width, height, width, height], np.float32)).astype(np.float32)
    return Drawn(Augmentation(crop, scale, False, *NO_JITTER), boxes_norm, np.array(labels, dtype=np.int64))


def color_jitter_(image: Tensor, order: Sequence[int], factors: Sequence[float]) -> Tensor:
    """In place on a float (3, H, W) image in [0, 255]: the colour steps in ``order``, each a
    blend (lerp) with ``factors``' factor, then a clamp to [0, 255] (as MindSpore's
    RandomColorAdjust): brightness blends with black, contrast with the mean grey level,
    saturation with the grey image (ITU-R 601 luma)."""
    luma = image.new_tensor(LUMA_RGB)
    for k, factor in zip(order, factors):
        if k == BRIGHTNESS:  # towards black
            image.mul_(factor)
        elif k == CONTRAST:  # towards the mean grey level
            image.lerp_((image.mean(dim=(1, 2)) @ luma).reshape(1, 1, 1), 1.0 - factor)
        else:  # towards the grey image
            image.lerp_(torch.tensordot(luma, image, dims=1)[None], 1.0 - factor)
        image.clamp_(0.0, 255.0)
    return image


def normalize(image: Tensor, *, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(3, H, W) uint8 or float in [0, 255] -> float32 ``(x / 255 - mean) / std``."""
    return _normalize_(image.to(torch.float32, copy=True), mean, std)


def _normalize_(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    std_t = image.new_tensor(std)[:, None, None]
    mean_t = image.new_tensor(mean)[:, None, None]
    return image.mul_(1.0 / (255.0 * std_t)).sub_(mean_t / std_t)


def apply_augmentation(data: bytes, augmentation: Augmentation, *, size_hw: tuple[int, int],
                       mean: Sequence[float], std: Sequence[float], resize_mode: str = "antialias") -> Tensor:
    """The CPU executor: decode ``augmentation.crop`` of the encoded image (at its reduced
    scale where antialiased), resize, flip, colour, normalize -> (3, H, W) float32."""
    antialias = resize_mode == "antialias"
    decoded = decode(data, crop=augmentation.crop, size_hw=size_hw if antialias else None,
                     scale=augmentation.decode_scale if antialias else None)
    image = resize_image(decoded.image, size_hw, resize_mode)
    if augmentation.flip:
        image = image.flip(-1)
    image = image.to(torch.float32, memory_format=torch.contiguous_format)
    if augmentation.jitter_factors != NO_JITTER[1]:
        color_jitter_(image, augmentation.jitter_order, augmentation.jitter_factors)
    return _normalize_(image, mean, std)


class Transformed(NamedTuple):
    image: Tensor  # (3, H, W) float32, normalized
    boxes_xyxy_norm: np.ndarray  # (G, 4) float32 in [0, 1]
    labels: np.ndarray  # (G,) int64


def train_transform(
    data: bytes, boxes_xyxy: np.ndarray, labels: np.ndarray, *, image_hw: tuple[int, int],
    size_hw: tuple[int, int], rng: np.random.Generator, mean: Sequence[float], std: Sequence[float],
    resize_mode: str = "antialias",
) -> Transformed:
    """The seed's training augmentation of one encoded image with pixel boxes, on the CPU:
    ``draw_augmentation`` then ``apply_augmentation``. ``resize_mode`` as ``resize_image``'s
    ``mode`` (legacy decodes at full scale, as TensorFlow does)."""
    drawn = draw_augmentation(boxes_xyxy, labels, image_hw=image_hw, size_hw=size_hw, rng=rng,
                              resize_mode=resize_mode)
    image = apply_augmentation(data, drawn.augmentation, size_hw=size_hw, mean=mean, std=std,
                               resize_mode=resize_mode)
    return Transformed(image, drawn.boxes_xyxy_norm, drawn.labels)


def eval_transform(
    data: bytes, boxes_xyxy: np.ndarray, labels: np.ndarray, *, image_hw: tuple[int, int],
    size_hw: tuple[int, int], mean: Sequence[float], std: Sequence[float],
    resize_mode: str = "antialias",
) -> Transformed:
    """Evaluation: resize and normalize only."""
    drawn = eval_augmentation(boxes_xyxy, labels, image_hw=image_hw, size_hw=size_hw, resize_mode=resize_mode)
    image = apply_augmentation(data, drawn.augmentation, size_hw=size_hw, mean=mean, std=std,
                               resize_mode=resize_mode)
    return Transformed(image, drawn.boxes_xyxy_norm, drawn.labels)
