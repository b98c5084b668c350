"""The seed's MindSpore checkpoints as ssdzoo and timm state dicts, without MindSpore.

Two kinds of .ckpt file (read by ``mindspore_ckpt``, named by ``mindspore_names``):

- a full SSD of the seed (``backbone_wrapper.*``, ``multi_box.*``), any of the three recipes,
  as ssdzoo's ``Detector`` state dict: ``mindspore_to_ssdzoo`` (``build_model(weights=...)``);
- a MindCV classification backbone (mobilenet_v2_100, mobilenet_v3_large_100, resnet50), as
  timm's: ``mindcv_backbone_to_timm`` (``backbone_ckpt_path``).

Every tensor of the file is used or reported as dropped (optimizer state, classifier heads,
layers timm pruned); one that maps nowhere, or a model tensor left unfilled, is an error that
names it. ``convert_checkpoint`` writes the result as safetensors (``ssdzoo convert``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor, nn

from .conversion import Conversion, complete, log_dropped, save_safetensors
from .mindspore_ckpt import MindSporeCheckpoint, read_mindspore_checkpoint
from .mindspore_names import (SSD_BACKBONE_PREFIX, SSD_RULES, Mapping, apply_rules, backbone_family,
                              map_backbone)

if TYPE_CHECKING:
    from ..config import Config
    from ..model import Detector

log = logging.getLogger(__name__)

# What training writes besides the network: optimizer moments and schedule, loss scale, EMA copy
TRAINING_STATE_PREFIXES = ("moments.", "moment1.", "moment2.", "accum.", "adam_m.", "adam_v.",
                           "ema.", "swa.")
TRAINING_STATE_NAMES = {"learning_rate", "momentum", "global_step", "weight_decay", "beta1_power",
                        "beta2_power", "scale_sense", "loss_scale", "epoch_num", "step_num",
                        "current_iterator_step", "last_overflow_iterator_step"}
SSD_PREFIXES = ("backbone_wrapper.", "multi_box.")


def is_ssd_checkpoint(ckpt: MindSporeCheckpoint) -> bool:
    """A full SSD of the seed (rather than a MindCV backbone)."""
    return any(tag.startswith(SSD_PREFIXES) for tag in ckpt.tensors)


def split_training_state(ckpt: MindSporeCheckpoint) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(the network's tensors, {tag: why dropped} for optimizer state and metadata)."""
    dropped = {tag: "training state (optimizer, schedule, loss scale or EMA)" for tag in ckpt.tensors
               if tag.startswith(TRAINING_STATE_PREFIXES) or tag in TRAINING_STATE_NAMES}
    dropped.update({tag: "metadata string" for tag in ckpt.strings})
    dropped.update({tag: "MapTensor (not part of an SSD)" for tag in ckpt.map_tensors})
    return {tag: t for tag, t in ckpt.tensors.items() if tag not in dropped}, dropped


def _fail_unmapped(unmapped: list[str], source: str, what: str) -> None:
    if unmapped:
        raise ValueError(f"{source}: {len(unmapped)} tensors {what}: " + ", ".join(unmapped[:10]))


def _conversion(mapping: Mapping, dropped: dict[str, str]) -> Conversion:
    return Conversion({name: t for name, (_, t) in mapping.targets.items()},
                      {name: tag for name, (tag, _) in mapping.targets.items()},
                      {**dropped, **mapping.dropped})


def convert_backbone(ckpt: MindSporeCheckpoint, cfg: "Config", source: str = "checkpoint") -> Conversion:
    """A MindCV backbone checkpoint, or the backbone part of a seed SSD, in timm's names."""
    family = backbone_family(cfg.backbone)
    network, dropped = split_training_state(ckpt)
    strip = ""
    if is_ssd_checkpoint(ckpt):
        strip = SSD_BACKBONE_PREFIX
        dropped.update({tag: "SSD neck/head (not part of the backbone)"
                        for tag in network if not tag.startswith(strip)})
        network = {tag: t for tag, t in network.items() if tag.startswith(strip)}
    mapping = map_backbone(network, family, strip=strip)
    _fail_unmapped(mapping.unmapped, source, f"have no counterpart in timm's {cfg.backbone} "
                                             f"(is this a MindCV {family} checkpoint?)")
    return _conversion(mapping, dropped)


def _ssd_part(ckpt: MindSporeCheckpoint, own: dict[str, Tensor], cfg: "Config",
              source: str) -> Conversion:
    """A full seed SSD: backbone by MindCV's tables, neck and head by the seed's."""
    network, dropped = split_training_state(ckpt)
    in_backbone = {t: v for t, v in network.items() if t.startswith(SSD_BACKBONE_PREFIX)}
    backbone = map_backbone(in_backbone, backbone_family(cfg.backbone), strip=SSD_BACKBONE_PREFIX,
                            prefix="backbone.model.")
    neck_head = apply_rules({t: v for t, v in network.items() if t not in in_backbone}, SSD_RULES)
    _fail_unmapped(backbone.unmapped + neck_head.unmapped, source,
                   f"match no part of ssdzoo's model (a checkpoint of another recipe than "
                   f"{cfg.backbone}'s?)")
    conversion = _conversion(Mapping({**backbone.targets, **neck_head.targets},
                                     {**backbone.dropped, **neck_head.dropped}, []), dropped)
    _fail_unmapped(sorted(set(conversion.state) - set(own)), source,
                   "are for layers this model lacks (a checkpoint of another recipe?)")
    return conversion


def _backbone_part(ckpt: MindSporeCheckpoint, own: dict[str, Tensor], cfg: "Config",
                   source: str) -> Conversion:
    """A backbone-only checkpoint: the backbone from the file, neck and head as they are."""
    backbone = convert_backbone(ckpt, cfg, source)
    state, sources, dropped = {}, {}, dict(backbone.dropped)
    for name, value in backbone.state.items():
        if f"backbone.model.{name}" in own:
            state[f"backbone.model.{name}"] = value
            sources[f"backbone.model.{name}"] = backbone.sources[name]
        else:
            dropped[backbone.sources[name]] = f"timm's {name}, pruned from this model's backbone"
    kept = [k for k in own if not k.startswith("backbone.") and not k.endswith("num_batches_tracked")]
    log.info("%s is a backbone checkpoint: the neck and head (%d tensors) keep their values",
             source, len(kept))
    state.update({k: own[k] for k in kept})
    return Conversion(state, sources, dropped)


def convert_ssd(ckpt: MindSporeCheckpoint, model: nn.Module, cfg: "Config",
                source: str = "checkpoint") -> Conversion:
    """A seed SSD checkpoint as a complete state dict of ssdzoo's ``model``.

    A backbone-only checkpoint fills the backbone; the neck and head keep the values ``model``
    has (logged). BN's ``num_batches_tracked``, which MindSpore lacks, is 0.
    """
    own = model.state_dict()
    part = _ssd_part if is_ssd_checkpoint(ckpt) else _backbone_part
    state, sources, dropped = part(ckpt, own, cfg, source)
    return complete(own, state, sources, dropped, where=str(source), model=f"{cfg.backbone}'s recipe")


def mindspore_to_ssdzoo(path: str | Path, model: "Detector", cfg: "Config") -> dict[str, Tensor]:
    """The seed's SSD .ckpt (or a MindCV backbone .ckpt) as a state dict for ``model``."""
    conversion = convert_ssd(read_mindspore_checkpoint(path), model, cfg, source=str(path))
    log_dropped(str(path), conversion.dropped)
    return conversion.state


def mindcv_backbone_to_timm(path: str | Path, timm_model: nn.Module, cfg: "Config") -> dict[str, Tensor]:
    """A MindCV backbone .ckpt (or a seed SSD's backbone) as a state dict for ``timm_model``,
    timm's ``cfg.backbone``, possibly pruned: what it lacks is dropped and logged."""
    conversion = convert_backbone(read_mindspore_checkpoint(path), cfg, source=str(path))
    wanted = timm_model.state_dict()
    dropped = dict(conversion.dropped)
    dropped.update({conversion.sources[k]: f"timm's {k}, pruned from this backbone"
                    for k in conversion.state if k not in wanted})
    state = {k: v.to(wanted[k].dtype) for k, v in conversion.state.items() if k in wanted}
    for key, value in wanted.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    log_dropped(str(path), dropped)
    return state


def convert_checkpoint(path: str | Path, cfg: "Config", out: str | Path,
                       build: Callable[[], nn.Module]) -> tuple[Conversion, str]:
    """Write a .ckpt as safetensors: a full SSD as the complete state dict of the model
    ``build()`` makes from ``cfg`` (for ``build_model(cfg, weights=out)``), a backbone as timm's
    (for ``backbone_ckpt_path``; no model is built). The file appears whole or not at all.
    Returns the conversion and its kind, "ssd" or "backbone"."""
    path, out = Path(path), Path(out)
    ckpt = read_mindspore_checkpoint(path)
    if is_ssd_checkpoint(ckpt):
        conversion, kind = convert_ssd(ckpt, build(), cfg, source=str(path)), "ssd"
    else:
        conversion, kind = convert_backbone(ckpt, cfg, source=str(path)), "backbone"
        counters = {k.replace("running_mean", "num_batches_tracked"): torch.tensor(0)
                    for k in conversion.state if k.endswith(".running_mean")}  # timm's BN has them
        conversion = conversion._replace(state={**conversion.state, **counters})
    log_dropped(str(path), conversion.dropped)
    save_safetensors(conversion.state, out, {"source": path.name, "kind": kind, "backbone": cfg.backbone})
    return conversion, kind


def mindspore_state_by_name(path: str | Path, model: "Detector", cfg: "Config") -> dict[str, Tensor]:
    """The seed's SSD .ckpt under ssdzoo's names, without requiring it to fill ``model``
    exactly (fine-tuning on other classes takes what fits)."""
    ckpt = read_mindspore_checkpoint(path)
    if not is_ssd_checkpoint(ckpt):
        raise ValueError(f"{path} holds a backbone only: give it as backbone_ckpt_path, not as a full model")
    conversion = _ssd_part(ckpt, model.state_dict(), cfg, str(path))
    log_dropped(str(path), conversion.dropped)
    return conversion.state
