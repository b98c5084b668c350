"""Default boxes (anchors), normalized cx, cy, w, h, in the seed's order: level, row, column, box.

Two generators, as in the seed:
- ``ssd_default_boxes``: SSD's scales and aspect ratios (Liu et al. 2016, section 2.2), used by
  the MobileNet recipes (1917 boxes at 300x300).
- ``grid_anchors``: RetinaNet-style grid anchors (the seed's GridAnchorGenerator), used by the
  ResNet50-FPN recipe (51150 boxes at 640x640).

Both also place boxes as TensorFlow's Object Detection API does (``anchor_centres:
tensorflow``, for its converted models): the sizes are the same, the centres differ. SSD boxes
also come as torchvision's ``DefaultBoxGenerator`` makes them (``anchor_scales``,
``anchor_order: torchvision``, ``anchor_clip``; its SSDLite places centres on the grid as TF does).

Values are float64; the seed computes them in float64 and rounds once to float32.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .config import Config


def default_boxes(cfg: "Config") -> Tensor:
    """The config's default boxes, (A, 4) cx, cy, w, h normalized to [0, 1].

    float64, as the seed computes them: ``encode`` takes the corners from these exact values
    (as the seed does), which decides exact IoU ties the seed's way; the model side casts to
    its own dtype.
    """
    tensorflow = cfg.anchor_centres == "tensorflow"
    if cfg.use_anchor_generator:
        anchors_cxcywh = grid_anchors(
            cfg.image_size, cfg.steps, scale=cfg.anchor_scale,
            scales_per_octave=cfg.scales_per_octave, aspect_ratios=cfg.anchor_aspect_ratios,
            tensorflow_offsets=tensorflow)
    else:
        anchors_cxcywh = ssd_default_boxes(
            cfg.image_size[0], cfg.feature_size, cfg.steps, cfg.aspect_ratios,
            min_scale=cfg.min_scale, max_scale=cfg.max_scale, num_default=cfg.num_default,
            explicit_ratios=cfg.explicit_aspect_ratios, centres_on_grid=tensorflow,
            scales=cfg.anchor_scales, torchvision_order=cfg.anchor_order == "torchvision",
            clip=cfg.anchor_clip)
    return anchors_cxcywh


def ssd_box_sizes(
    aspect_ratios: tuple[tuple[float, ...], ...], *, min_scale: float, max_scale: float,
    num_levels: int, explicit_ratios: tuple[float, ...] | None = None,
    scales: tuple[float, ...] | None = None, torchvision_order: bool = False, clip: bool = False,
) -> list[list[tuple[float, float]]]:
    """(w, h) of each box per level, normalized.

    s_k = min_scale + (max_scale - min_scale) k / (levels - 1), then s_levels = 1.0. A level
    with no aspect ratios (only level 0) gets (0.1, 0.1) and s_0 at ratio 2 both ways; other
    levels get (s_k, s_k), s_k at each ratio r both ways, and (s'_k, s'_k) with
    s'_k = sqrt(s_k s_{k+1}). With ``explicit_ratios`` those levels get s_k at exactly each of
    them instead (w = s_k sqrt(r), h = s_k / sqrt(r)), then (s'_k, s'_k): TF's
    ssd_anchor_generator, whose configs write 1/3 as 0.3333.

    ``scales`` gives s_0 .. s_levels outright; ``torchvision_order`` puts (s'_k, s'_k) second,
    right after (s_k, s_k), as torchvision's DefaultBoxGenerator does (no reduced level 0
    there); ``clip`` clips every width and height to [0, 1] (its ``clip=True``).

    >>> [tuple(round(v, 4) for v in wh) for wh in ssd_box_sizes(((), (2,)), min_scale=0.2,
    ...     max_scale=0.9, num_levels=2, explicit_ratios=(1.0, 4.0))[1]]
    [(0.9, 0.9), (1.8, 0.45), (0.9487, 0.9487)]
    """
    if scales is not None:
        s = list(scales)
    else:
        s = [min_scale + (max_scale - min_scale) * k / max(num_levels - 1, 1) for k in range(num_levels)]
        s.append(1.0)
    sizes = []
    for k in range(num_levels):
        if torchvision_order:
            s_prime = math.sqrt(s[k] * s[k + 1])
            level = [(s[k], s[k]), (s_prime, s_prime)]
            for r in aspect_ratios[k]:
                w, h = s[k] * math.sqrt(r), s[k] / math.sqrt(r)
                level += [(w, h), (h, w)]
        elif k == 0 and not aspect_ratios[k]:
            w, h = s[0] * math.sqrt(2), s[0] / math.sqrt(2)
            level = [(0.1, 0.1), (w, h), (h, w)]
        elif explicit_ratios is not None:
            level = [(s[k] * math.sqrt(r), s[k] / math.sqrt(r)) for r in explicit_ratios]
            s_prime = math.sqrt(s[k] * s[k + 1])
            level.append((s_prime, s_prime))
        else:
            level = [(s[k], s[k])]
            for r in aspect_ratios[k]:
                w, h = s[k] * math.sqrt(r), s[k] / math.sqrt(r)
                level += [(w, h), (h, w)]
            s_prime = math.sqrt(s[k] * s[k + 1])
            level.append((s_prime, s_prime))
        if clip:
            level = [(min(max(w, 0.0), 1.0), min(max(h, 0.0), 1.0)) for w, h in level]
        sizes.append(level)
    return sizes


def ssd_default_boxes(
    image_size: int, feature_size: tuple[int, ...], steps: tuple[int, ...],
    aspect_ratios: tuple[tuple[float, ...], ...], *, min_scale: float, max_scale: float,
    num_default: tuple[int, ...] | None = None, explicit_ratios: tuple[float, ...] | None = None,
    centres_on_grid: bool = False, scales: tuple[float, ...] | None = None,
    torchvision_order: bool = False, clip: bool = False,
) -> Tensor:
    """SSD default boxes, (A, 4) float64 cx, cy, w, h.

    Box centres are ((j + 0.5) / f_k, (i + 0.5) / f_k) with f_k = image_size / step: the step,
    not the map size, sets the spacing (300 / 16 = 18.75 for a 19x19 map), as in the seed.
    ``centres_on_grid`` takes f_k = the map size instead (TensorFlow's SSD anchors: (j + 0.5) / 19).
    """
    sizes = ssd_box_sizes(aspect_ratios, min_scale=min_scale, max_scale=max_scale,
                          num_levels=len(feature_size), explicit_ratios=explicit_ratios, scales=scales,
                          torchvision_order=torchvision_order, clip=clip)
    levels = []
    for k, (f, step) in enumerate(zip(feature_size, steps)):
        if num_default is not None and len(sizes[k]) != num_default[k]:
            raise ValueError(f"level {k}: aspect_ratios give {len(sizes[k])} boxes per location, "
                             f"num_default says {num_default[k]}")
        f_k = f if centres_on_grid else image_size / step
        centres = (torch.arange(f, dtype=torch.float64) + 0.5) / f_k
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")  # (f, f): row i, column j
        wh = torch.tensor(sizes[k], dtype=torch.float64)  # (B, 2)
        cxcy = torch.stack([cx, cy], dim=-1)[:, :, None, :].expand(f, f, len(wh), 2)
        levels.append(torch.cat([cxcy, wh.expand(f, f, -1, -1)], dim=-1).reshape(-1, 4))
    return torch.cat(levels)


def grid_anchors(
    image_size: tuple[int, int], steps: tuple[int, ...], *, scale: float = 4.0,
    scales_per_octave: int = 2, aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5),
    tensorflow_offsets: bool = False,
) -> Tensor:
    """Grid anchors, (A, 4) float64 cx, cy, w, h normalized by the image size.

    Per level of stride s: base size scale * s; sizes 2^(i / scales_per_octave) * base with
    h = size / sqrt(r), w = size * sqrt(r) for each aspect ratio r (ratio-major, then scale);
    centres at s / 2 + s * index. ``tensorflow_offsets``: TF's MultiscaleGridAnchorGenerator
    rule, the s / 2 offset only along a side that s divides (so at s * index for a 320-pixel
    side at stride 128).
    """
    height, width = image_size
    octave = torch.tensor([2 ** (i / scales_per_octave) for i in range(scales_per_octave)],
                          dtype=torch.float64)
    ratio_sqrt = torch.tensor(aspect_ratios, dtype=torch.float64).sqrt()
    levels = []
    for step in steps:
        base = scale * step
        box_w = (ratio_sqrt[:, None] * octave[None, :]).flatten() * base  # (B,)
        box_h = (octave[None, :] / ratio_sqrt[:, None]).flatten() * base
        offset_y = step / 2 if not tensorflow_offsets or height % step == 0 else 0.0
        offset_x = step / 2 if not tensorflow_offsets or width % step == 0 else 0.0
        ys = torch.arange(math.ceil(height / step), dtype=torch.float64) * step + offset_y
        xs = torch.arange(math.ceil(width / step), dtype=torch.float64) * step + offset_x
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        n, b = cy.numel(), box_w.numel()
        levels.append(torch.stack([
            cx.reshape(-1, 1).expand(n, b) / width, cy.reshape(-1, 1).expand(n, b) / height,
            box_w.expand(n, b) / width, box_h.expand(n, b) / height,
        ], dim=-1).reshape(-1, 4))
    return torch.cat(levels)
