"""The seed's learning-rate schedule: per-step linear warmup, then cosine decay."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .config import Config


def lr_schedule(cfg: "Config", steps_per_epoch: int) -> np.ndarray:
    """Learning rate of every step of training, float32, length steps_per_epoch * epoch_size.

    Warmup: lr_init -> lr linearly over warmup_epochs * steps_per_epoch steps. Then cosine from
    lr to lr * lr_end_rate over the remaining steps. Never below 0.
    """
    total = steps_per_epoch * cfg.epoch_size
    warmup = int(steps_per_epoch * cfg.warmup_epochs)
    lr_max, lr_end = cfg.lr, cfg.lr * cfg.lr_end_rate
    rates = []
    for step in range(total):
        if step < warmup:
            rate = cfg.lr_init + (lr_max - cfg.lr_init) * step / warmup
        else:
            progress = (step - warmup) / max(total - warmup, 1)
            rate = lr_end + (lr_max - lr_end) * (1.0 + math.cos(math.pi * progress)) / 2.0
        rates.append(max(rate, 0.0))
    return np.asarray(rates, dtype=np.float32)
