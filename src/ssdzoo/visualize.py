"""Boxes drawn on their image: detections labelled "class score", ground truth "class"; one colour per class."""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .postprocess import Detections

DEFAULT_DRAW_SCORE = 0.3  # the viewing threshold of drawn pictures (ultralytics draws from 0.25)

# hue step of the golden ratio: consecutive labels get well-separated colours for any count
_GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def class_colour(label: int) -> tuple[int, int, int]:
    """A saturated RGB colour for ``label``, distinct from its neighbours' and stable across runs."""
    hue = (label * _GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image: Image.Image | np.ndarray, detections: Detections, class_names: Sequence[str],
                    *, min_score: float = 0.0, line_width: int | None = None) -> Image.Image:
    """A new RGB image with every detection scoring over ``min_score`` drawn on ``image``.

    Boxes are xyxy pixels of ``image``; labels index ``class_names`` (index 0 = background).
    Lower-scoring boxes are drawn first so the most confident ones stay on top.
    """
    canvas = (Image.fromarray(image) if isinstance(image, np.ndarray) else image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    size = max(canvas.size)
    width = line_width or max(1, round(size / 320))
    font = ImageFont.load_default(size=max(10, round(size / 45)))
    boxes = detections.boxes.tolist()
    scores = detections.scores.tolist()
    labels = detections.labels.tolist()
    for i in sorted(range(len(scores)), key=scores.__getitem__):
        if scores[i] <= min_score:
            continue
        name = class_names[labels[i]] if 0 <= labels[i] < len(class_names) else str(labels[i])
        _labelled_box(draw, boxes[i], f"{name} {scores[i]:.2f}", class_colour(labels[i]), width, font)
    return canvas


def draw_boxes(image: Image.Image | np.ndarray, boxes_xyxy: Sequence[Sequence[float]], labels: Sequence[int],
               class_names: Sequence[str], *, line_width: int | None = None) -> Image.Image:
    """A new RGB image with labelled boxes (ground truth: class names, no scores) drawn on it;
    the colours are ``draw_detections``'s."""
    canvas = (Image.fromarray(image) if isinstance(image, np.ndarray) else image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    size = max(canvas.size)
    width = line_width or max(1, round(size / 320))
    font = ImageFont.load_default(size=max(10, round(size / 45)))
    for box, label in zip(boxes_xyxy, labels):
        label = int(label)
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        _labelled_box(draw, [float(v) for v in box], name, class_colour(label), width, font)
    return canvas


def _labelled_box(draw: ImageDraw.ImageDraw, box: Sequence[float], text: str, colour: tuple[int, int, int],
                  width: int, font) -> None:
    x1, y1, x2, y2 = box
    draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    text_w, text_h = right - left, bottom - top
    # the label sits above the box, or inside its top edge when the box touches the top
    text_y = y1 - text_h - 2 * width if y1 - text_h - 2 * width >= 0 else y1
    draw.rectangle((x1, text_y, x1 + text_w + 2 * width, text_y + text_h + 2 * width), fill=colour)
    draw.text((x1 + width - left, text_y + width - top), text, fill=_text_colour(colour), font=font)


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light label backgrounds, white on dark ones (Rec. 601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)
