"""Boxes drawn on their image: detections labelled "class score", ground truth "class"; one colour per class.

Each box and label is edged by a one-pixel line of black or white, whichever contrasts with the
picture around the box, so that a box stays visible on a background of its own colour."""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageStat

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
        _labelled_box(canvas, draw, boxes[i], (name, f"{scores[i]:.2f}"), class_colour(labels[i]), width, font)
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
        _labelled_box(canvas, draw, [float(v) for v in box], (name,), class_colour(label), width, font)
    return canvas


def _labelled_box(canvas: Image.Image, draw: ImageDraw.ImageDraw, box: Sequence[float], words: Sequence[str],
                  colour: tuple[int, int, int], width: int, font) -> None:
    """The box in ``colour`` with a contrasting edge, and ``words`` ("name", "score") on a label.
    The words are drawn apart by a gap of 0.7 em, not a space: the default font's space is
    narrow enough that "class_1 0.90" would read as "class_ 10.90"."""
    x1, y1, x2, y2 = box
    edge = _edge_colour(canvas, box, width)
    draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=edge, width=width + 2)
    draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
    sizes = [draw.textbbox((0, 0), word, font=font) for word in words]
    gap = round(0.7 * font.size) if hasattr(font, "size") else 7
    text_w = sum(right - left for left, _, right, _ in sizes) + gap * (len(words) - 1)
    top, bottom = min(t for _, t, _, _ in sizes), max(b for _, _, _, b in sizes)
    text_h = bottom - top
    # the label sits above the box, or inside its top edge when the box touches the top
    text_y = y1 - text_h - 2 * width if y1 - text_h - 2 * width >= 0 else y1
    draw.rectangle((x1 - 1, text_y - 1, x1 + text_w + 2 * width + 1, text_y + text_h + 2 * width + 1), fill=edge)
    draw.rectangle((x1, text_y, x1 + text_w + 2 * width, text_y + text_h + 2 * width), fill=colour)
    x = x1 + width
    for word, (left, _, right, _) in zip(words, sizes):
        draw.text((x - left, text_y + width - top), word, fill=_text_colour(colour), font=font)
        x += right - left + gap


def _edge_colour(canvas: Image.Image, box: Sequence[float], width: int) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with the picture along the box's lines."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    pad = 2 * width + 2
    region = canvas.crop((max(0, x1 - pad), max(0, y1 - pad), min(canvas.width, x2 + pad + 1),
                          min(canvas.height, y2 + pad + 1)))
    if region.width == 0 or region.height == 0:
        return (0, 0, 0)
    luma = ImageStat.Stat(region.convert("L")).mean[0]
    return (0, 0, 0) if luma > 110 else (255, 255, 255)


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light label backgrounds, white on dark ones (Rec. 601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)
