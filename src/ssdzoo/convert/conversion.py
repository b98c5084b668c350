"""What each framework's conversion ends in: a complete state dict of ssdzoo's model, every
tensor present and of the model's shape and dtype, or an error naming what doesn't fit; and the
log of what the file held that was not used."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

log = logging.getLogger(__name__)


class Conversion(NamedTuple):
    state: dict[str, Tensor]  # ssdzoo state-dict name -> tensor
    sources: dict[str, str]  # ssdzoo name -> the file's name for it
    dropped: dict[str, str]  # the file's name -> why it is not used


def complete(own: dict[str, Tensor], state: dict[str, Tensor], sources: dict[str, str], dropped: dict[str, str],
             *, where: str, model: str = "the config's model", hint: str = "") -> Conversion:
    """``state`` checked against the model's own state dict ``own`` and cast to its dtypes.
    BN's ``num_batches_tracked``, which other frameworks lack, is 0. ``where`` (the file) and
    ``model`` name the two sides in errors; ``hint`` ends them."""
    state = dict(state)
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"{where} lacks {len(missing)} tensors of the model: {', '.join(missing[:10])}{hint}")
    misshapen = [f"{sources.get(k, k)} {tuple(state[k].shape)} -> {k} (model {tuple(own[k].shape)})"
                 for k in own if state[k].shape != own[k].shape]
    if misshapen:
        raise ValueError(f"{where} does not fit {model}: " + "; ".join(misshapen[:10]) + hint)
    return Conversion({k: state[k].to(own[k].dtype) for k in own}, sources, dropped)


def log_dropped(source: str, dropped: dict[str, str]) -> None:
    """One log line per reason: which checkpoint tensors were not used, and why."""
    by_reason = defaultdict(list)
    for tag, why in dropped.items():
        by_reason[why].append(tag)
    for why, tags in by_reason.items():
        shown = ", ".join(tags[:4]) + (" ..." if len(tags) > 4 else "")
        log.info("%s: %d tensors not used, %s: %s", source, len(tags), why, shown)


def save_safetensors(state: dict[str, Tensor], out: str | Path, metadata: dict[str, str]) -> None:
    """Write ``state`` to ``out`` whole or not at all, with the mode any other file gets (safetensors
    itself creates files readable by their owner only, 0600)."""
    from safetensors.torch import save_file

    from ..atomic import atomic_path

    umask = os.umask(0)
    os.umask(umask)
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o666 & ~umask)
