"""Weight files in, state dicts out: nothing is unpickled, nothing is downloaded.

Accepted: safetensors files, PyTorch files read with ``torch.load(weights_only=True)`` (a plain
state dict, or an ssdzoo training checkpoint with a "model" entry), and MindSpore .ckpt files
(read without MindSpore, see ``ssdzoo.convert.mindspore``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .config import Config
    from .model import Detector

log = logging.getLogger(__name__)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a safetensors or PyTorch weights file (an ssdzoo checkpoint's "model")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable PyTorch weights file ({err})") from err
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return obj


def load_model_weights(model: "Detector", path: str | Path, cfg: "Config") -> None:
    """Fill every parameter and buffer of ``model`` from ``path``; fail naming what's missing."""
    path = Path(path)
    if path.suffix == ".ckpt":
        from .convert.mindspore import mindspore_to_ssdzoo

        state = mindspore_to_ssdzoo(path, model, cfg)
    else:
        state = read_state_dict(path)
    load_exact(model, state, source=str(path))


def load_backbone_weights(model: "Detector", path: str | Path, cfg: "Config") -> None:
    """Fill the backbone from a timm checkpoint (or a MindCV backbone .ckpt).

    The classifier and other layers the detector pruned are dropped and logged; a backbone
    parameter the file lacks is an error.
    """
    path = Path(path)
    if path.suffix == ".ckpt":
        from .convert.mindspore import mindcv_backbone_to_timm

        state = mindcv_backbone_to_timm(path, model.backbone.model, cfg)
    else:
        state = read_state_dict(path)
    target = model.backbone.model
    wanted = set(target.state_dict())
    dropped = sorted(set(state) - wanted)
    if dropped:
        log.info("%s: %d tensors not used by the backbone (classifier/head): %s", path,
                 len(dropped), ", ".join(dropped[:8]) + (" ..." if len(dropped) > 8 else ""))
    load_exact(target, {k: v for k, v in state.items() if k in wanted}, source=str(path))


def load_exact(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """load_state_dict that names every missing, unexpected or misshapen tensor."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:10])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:10])}")
    if misshapen:
        problems.append("wrong shape: " + ", ".join(
            f"{k} {tuple(state[k].shape)} (model {tuple(own[k].shape)})" for k in misshapen[:10]))
    if problems:
        raise ValueError(f"{source} does not fit the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)
