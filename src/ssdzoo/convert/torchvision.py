"""torchvision's SSDs (``ssd300_vgg16``, ``ssdlite320_mobilenet_v3_large``) as ssdzoo models.

A torchvision state dict (``torch.load(..., weights_only=True)`` of a downloaded
``ssd300_vgg16_coco-b556d3b4.pth`` or a user's own ``model.state_dict()``) is told apart by its
names (``torchvision_names.identify_family``) and mapped onto the model of the recipe of the
same name, which holds torchvision's numerics: its default boxes, box coder, resize and
normalization, softmax scores and post-processing. Two things come out, as for TensorFlow:

- ``torchvision_config(cfg, state)``: the recipe with the file's class count (read from the
  class head), and torchvision's 91 COCO category slots for a COCO model;
- ``torchvision_to_ssdzoo(state, model, cfg)``: a complete state dict for that model, every
  tensor of the file used, or an error naming what doesn't fit.

Nothing here downloads: the category names are torchvision's own list, installed with it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional

from torch import Tensor, nn

from ..config import config_from_dict, resolve_config_path
from .conversion import Conversion, complete, log_dropped
from .torchvision_names import FAMILIES, class_conv_name, identify_family, name_map

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)

# recipe keys that make a config compute what torchvision's model computes
TORCHVISION_KEYS = ("image_resize", "anchor_order", "anchor_clip", "score_activation", "decode_max_log_scale")


class TorchvisionSource(NamedTuple):
    path: str
    family: str  # one of FAMILIES, also the name of its recipe
    state: dict[str, Tensor]


def identify_torchvision(state: dict[str, Tensor], path: str | Path = "state dict") -> Optional[TorchvisionSource]:
    """The file's state dict as a torchvision SSD, or None if it is not one."""
    family = identify_family(set(state))
    return None if family is None else TorchvisionSource(str(path), family, state)


def read_torchvision(path: str | Path) -> Optional[TorchvisionSource]:
    """A PyTorch file (.pth, .pt) holding a torchvision SSD state dict (plain, or under "model"
    as torchvision's reference scripts save it), read; None for any other file (another state
    dict, an ssdzoo checkpoint, another format, a missing path). The file is memory-mapped, so
    other checkpoints are not read whole; the weights loader reports what is wrong with a file
    that is none of these."""
    import torch

    path = Path(path)
    if not path.is_file() or path.suffix not in (".pth", ".pt"):
        return None
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # torch.save's zip format, which memory-mapping needs
            return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # damaged or not a state dict: the weights loader says why, naming the file
        return None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        return None
    return identify_torchvision(state, path)


def coco_categories() -> tuple[str, ...]:
    """torchvision's 91 COCO slots (its labels are COCO category ids), column 0 background; the
    ten ids COCO never used are ``N/A_<id>`` (torchvision's "N/A", made unique)."""
    from torchvision.models.detection import SSD300_VGG16_Weights

    names = SSD300_VGG16_Weights.COCO_V1.meta["categories"]  # a list shipped with torchvision
    return ("background",) + tuple(f"N/A_{i}" if n == "N/A" else n for i, n in enumerate(names) if i)


def recipe_path(family: str) -> Path:
    return resolve_config_path(family)


def class_count(source: TorchvisionSource, num_default: tuple[int, ...]) -> int:
    name = class_conv_name(source.family)
    if name not in source.state:
        raise ValueError(f"{source.path}: lacks {name!r}, the class head the class count is read from")
    outputs = source.state[name].numel()
    if outputs % num_default[0]:
        raise ValueError(f"{source.path}: {name!r} has {outputs} outputs, not a multiple of {num_default[0]} "
                         "boxes per place")
    return outputs // num_default[0]


def torchvision_config(cfg: "Config", source: TorchvisionSource) -> "Config":
    """``cfg`` (the family's recipe, or a user's config built on it) with the file's class
    count; a 91-class file keeps the recipe's COCO names, another count gets ``class_<i>``
    placeholders unless ``cfg`` names that many classes."""
    if any(getattr(cfg, key) != value for key, value in _recipe_numerics(source.family).items()):
        log.warning("%s: a torchvision %s, but the config's numerics (%s) are not the %s recipe's: the model "
                    "will not compute what torchvision's does", source.path, source.family,
                    ", ".join(TORCHVISION_KEYS), source.family)
    num_classes = class_count(source, cfg.num_default)
    if num_classes == cfg.num_classes:
        return cfg
    classes = coco_categories() if num_classes == 91 else \
        ("background",) + tuple(f"class_{i}" for i in range(1, num_classes))
    return config_from_dict({**cfg.to_dict(), "num_classes": num_classes, "classes": list(classes)},
                            source=f"{source.path} ({source.family})")


def _recipe_numerics(family: str) -> dict:
    from ..config import load_config

    recipe = load_config(recipe_path(family))
    return {key: getattr(recipe, key) for key in TORCHVISION_KEYS}


def torchvision_state_by_name(source: TorchvisionSource, model: nn.Module) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The file's tensors under ssdzoo's names (shapes unchecked: fine-tuning replaces the class
    head), and {ssdzoo name: torchvision name}. A tensor that fits no rule is an error."""
    mapping, unmapped = name_map(source.family, list(source.state), model.backbone.model)
    if unmapped:
        raise ValueError(f"{source.path} (torchvision {source.family}): {len(unmapped)} tensors fit no part of "
                         f"ssdzoo's model: " + ", ".join(unmapped[:10]))
    return ({ours: source.state[theirs] for theirs, ours in mapping.items()},
            {ours: theirs for theirs, ours in mapping.items()})


def torchvision_to_ssdzoo(source: TorchvisionSource, model: nn.Module, cfg: "Config") -> Conversion:
    """The file's weights as a complete state dict for ``model`` (built from the family's recipe)."""
    own = model.state_dict()
    where = f"{source.path} (torchvision {source.family})"
    hint = f" (a torchvision {source.family} needs the {source.family} recipe)"
    state, sources = torchvision_state_by_name(source, model)
    extra = sorted(set(state) - set(own))
    if extra:
        raise ValueError(f"{where}: {len(extra)} tensors are for layers this model lacks: "
                         + ", ".join(f"{sources[k]} -> {k}" for k in extra[:10]) + hint)
    return complete(own, state, sources, {}, where=where, model=f"the {cfg.backbone} model of the config", hint=hint)


def convert_torchvision(source: TorchvisionSource, cfg: "Config", out: str | Path, model: nn.Module) -> Conversion:
    """Write the file's weights as safetensors for ``model`` (built from ``cfg``, which
    ``torchvision_config`` gave) and ``cfg`` beside it as ``OUT.yaml``. Atomic, both."""
    from safetensors.torch import save_file

    from ..atomic import atomic_path
    from ..config import save_config

    out = Path(out)
    conversion = torchvision_to_ssdzoo(source, model, cfg)
    log_dropped(source.path, conversion.dropped)
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in conversion.state.items()}, str(tmp),
                  metadata={"source": Path(source.path).name, "kind": "ssd", "family": f"torchvision_{source.family}",
                            "backbone": cfg.backbone})
    save_config(cfg, out.with_suffix(".yaml"),
                header=f"ssdzoo recipe for {out.name}, converted from {Path(source.path).name} (torchvision "
                       f"{source.family}).\nLayers and numerics are torchvision's; class i is torchvision's label i.")
    return conversion


__all__ = ["FAMILIES", "TorchvisionSource", "coco_categories", "convert_torchvision", "identify_torchvision",
           "read_torchvision",
           "torchvision_config", "torchvision_state_by_name", "torchvision_to_ssdzoo"]
