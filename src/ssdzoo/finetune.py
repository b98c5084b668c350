"""Fine-tuning: a new run that starts from a full model trained on other classes.

``load_for_finetuning(model, path, cfg)`` fills ``model`` (built for the new classes) from an
ssdzoo checkpoint, a safetensors file (ssdzoo's, or a converted TF / MindSpore model) or the
seed's MindSpore .ckpt:

- every tensor whose name and shape fit is loaded: backbone, neck, box-offset head, and the
  class branches' depthwise layers;
- the class-logit convolutions keep the fresh initialization ``build_model`` gave them (bias at
  ``cls_prior``) when their shapes differ (another class count), or when the file is an ssdzoo
  checkpoint trained on other class names;
- any other tensor of the model that the file cannot fill is an error naming it (a backbone
  left random is the classic silent fine-tuning failure), with the recipe the file was trained
  with where it says;
- the file's tensors the model has no place for are logged as not used.

``--weights`` (this) starts a new run: fresh optimizer, schedule and epoch count; ``--resume``
continues a run where it stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .config import Config
    from .model import Detector

log = logging.getLogger(__name__)


class FinetuneReport(NamedTuple):
    loaded: list[str]  # model tensors filled from the file
    fresh: list[str]  # class-logit tensors left at their new initialization
    unused: list[str]  # file tensors the model has no place for
    reason: str  # why the class convs are fresh ("" if none are)


def class_logit_names(model: "Detector") -> set[str]:
    """State-dict names of the convolutions whose outputs are class logits."""
    convs = {id(conv) for conv in model.head.cls_convs()}
    return {f"{name}.{p}" for name, module in model.named_modules() if id(module) in convs
            for p, _ in module.named_parameters(recurse=False)}


def read_full_model(path: str | Path, model: "Detector", cfg: "Config") -> tuple[dict[str, Tensor], Optional[dict]]:
    """The file's tensors under ssdzoo's names, and its saved config (ssdzoo checkpoints only)."""
    from .checkpoint_config import saved_config
    from .weights import WeightsFileError, read_state_dict, weights_kind

    path = Path(path)
    kind = weights_kind(path)
    if kind == "mindspore":
        from .convert.mindspore import mindspore_state_by_name

        return mindspore_state_by_name(path, model, cfg), None
    if kind == "tensorflow":
        raise WeightsFileError(path, "a TensorFlow model: convert it first (ssdzoo convert FILE --config RECIPE "
                                     "--out model.safetensors) and fine-tune from the .safetensors with its recipe")
    if kind == "onnx":
        raise WeightsFileError(path, "an ONNX graph, which cannot fill a PyTorch model")
    state = read_state_dict(path)
    from .convert.torchvision import identify_torchvision, torchvision_state_by_name

    torchvision = identify_torchvision(state, path)
    if torchvision is not None:
        return torchvision_state_by_name(torchvision, model)[0], None
    return state, saved_config(path)


def weights_normalization(cfg: "Config", path: str | Path, given: set[str] = frozenset()) -> "Config":
    """``cfg`` with the input normalization (``mean``, ``std``) the weights in ``path`` were
    trained with, where ``given`` (the keys the user set) leaves them to the recipe: a converted
    TF model expects TF's [-1, 1] inputs (mean = std = 0.5), and an ImageNet normalization would
    feed its first layer other numbers than it learned on. The file's config is an ssdzoo
    checkpoint's saved one, or the recipe ``ssdzoo convert`` wrote beside a ``.safetensors``."""
    from .checkpoint_config import saved_config
    from .config import config_from_dict
    from .weights import converted_recipe

    if {"mean", "std"} & set(given):
        return cfg
    saved, source = saved_config(path), f"{path} (its saved config)"
    if saved is None and (recipe := converted_recipe(path)) is not None:
        from .config import load_config

        trained, source = load_config(recipe), f"{recipe}, the recipe converted with {path}"
    elif saved is not None:
        trained = config_from_dict(saved, source=source)
    else:
        return cfg
    if (trained.mean, trained.std) == (cfg.mean, cfg.std):
        return cfg
    log.warning("fine-tuning from %s: its inputs were normalized with mean %s, std %s (%s); training with "
                "those instead of the config's mean %s, std %s (set mean=... std=... to choose)", path,
                list(trained.mean), list(trained.std), source, list(cfg.mean), list(cfg.std))
    return cfg.replace(mean=trained.mean, std=trained.std)


def load_for_finetuning(model: "Detector", path: str | Path, cfg: "Config") -> FinetuneReport:
    """Fill ``model`` from ``path`` as the module docstring says; returns what went where."""
    from .config import config_from_dict, describe_model

    state, saved = read_full_model(path, model, cfg)
    own = model.state_dict()
    logits = class_logit_names(model)
    fits = {k for k in own if k in state and state[k].shape == own[k].shape}
    reason = ""
    if logits - fits:
        file_classes = _classes_in(state, logits, model)
        reason = f"the file has {file_classes} classes, this model {cfg.num_classes}" if file_classes else \
            "their shapes differ from the file's"
    elif saved and saved.get("classes") and list(saved["classes"]) != list(cfg.classes):
        reason = (f"the file was trained on {', '.join(saved['classes'][1:6])}"
                  f"{' ...' if len(saved['classes']) > 6 else ''}, this model on {', '.join(cfg.classes[1:6])}"
                  f"{' ...' if len(cfg.classes) > 6 else ''}")
    fresh = sorted(logits) if reason else []
    problems = sorted(k for k in own if k not in fits and k not in logits and not k.endswith("num_batches_tracked"))
    if problems:
        trained = ""
        if saved:
            try:
                trained = f" It was trained as {describe_model(config_from_dict(saved, source=str(path)))}."
            except ValueError:
                trained = ""
        detail = ", ".join(f"{k} {_shape(state, k)} (model {tuple(own[k].shape)})" for k in problems[:6])
        raise ValueError(f"{path} does not fit {describe_model(cfg)} beyond its class layers: {len(problems)} "
                         f"tensors missing or of another shape ({detail}{' ...' if len(problems) > 6 else ''})."
                         f"{trained}")
    load = {k: state[k] for k in fits if k not in fresh}
    for key in own:  # MindSpore files lack BN's step counters
        if key.endswith("num_batches_tracked") and key not in load:
            load[key] = torch.zeros_like(own[key])
    model.load_state_dict({**own, **load}, strict=True)
    unused = sorted(set(state) - set(own))
    log.info("fine-tuning from %s: %d of %d tensors loaded", path, len(load), len(own))
    if fresh:
        log.info("  initialized afresh (cls_prior %s), as %s: %s", cfg.cls_prior, reason, ", ".join(fresh))
    if unused:
        shown = ", ".join(unused[:8]) + (" ..." if len(unused) > 8 else "")
        log.info("  %d tensors of the file not used: %s", len(unused), shown)
    return FinetuneReport(sorted(load), fresh, unused, reason)


def _shape(state: dict[str, Tensor], key: str) -> str:
    return str(tuple(state[key].shape)) if key in state else "missing"


def _classes_in(state: dict[str, Tensor], logits: set[str], model: "Detector") -> Optional[int]:
    """The class count (background included) the file's class convs were built for."""
    convs = {f"{name}.bias": module for name, module in model.named_modules()
             if module in model.head.cls_convs()}
    for key, conv in convs.items():
        if key in state and key in logits:
            boxes = conv.out_channels // model.head.num_classes
            if boxes and state[key].shape[0] % boxes == 0:
                return state[key].shape[0] // boxes
    return None
