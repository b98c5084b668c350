"""Weight files in, state dicts out: nothing is unpickled, nothing is downloaded.

Accepted (``weights_kind`` tells them apart by content, and by name where the content is
plain protobuf):

- safetensors files;
- PyTorch files read with ``torch.load(weights_only=True)``: a plain state dict, or an ssdzoo
  training checkpoint with a "model" entry (``.pt``, ``.pth``); torchvision's SSD state dicts
  (``ssd300_vgg16``, ``ssdlite320_mobilenet_v3_large``) are told by their names and renamed
  (``ssdzoo.convert.torchvision``);
- MindSpore ``.ckpt`` files (read without MindSpore, ``ssdzoo.convert.mindspore``);
- TensorFlow Object Detection API files (read without TensorFlow, ``ssdzoo.convert.tensorflow``):
  frozen graphs (``.pb``), checkpoints (``PREFIX.index`` + ``PREFIX.data-*``, given as either
  file, the prefix, or their folder) and SavedModel folders.

Anything else is an error naming the file and these kinds, in ssdzoo's words (``.onnx`` graphs
go to ``ssdzoo.inference.Predictor``, which runs them; they cannot fill a PyTorch model).

The dependency points one way: ``model.build`` -> ``weights`` -> ``convert``; nothing here or in
``convert`` builds a model.
"""

from __future__ import annotations

import logging
import pickle
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .convert.conversion import log_dropped
from .convert.mindspore import mindcv_backbone_to_timm, mindspore_to_ssdzoo
from .convert.tensorflow import is_tensorflow_file, tensorflow_to_ssdzoo
from .convert.torchvision import identify_torchvision, torchvision_to_ssdzoo

if TYPE_CHECKING:
    from .config import Config
    from .model import Detector

log = logging.getLogger(__name__)

READABLE_KINDS = ("ssdzoo/PyTorch checkpoints (.pt, .pth), .safetensors, MindSpore .ckpt, "
                  "TensorFlow frozen graphs (.pb), TensorFlow checkpoints (PREFIX.index + PREFIX.data-*) "
                  "and SavedModel folders")
ONNX_KIND = "and .onnx graphs from `ssdzoo export`"


class WeightsFileError(ValueError):
    """A file that is not a weights file ssdzoo reads; the message names the kinds it reads."""

    def __init__(self, path: str | Path, reason: str, *, onnx: bool = False):
        kinds = READABLE_KINDS.replace(" and SavedModel folders", ", SavedModel folders " + ONNX_KIND) \
            if onnx else READABLE_KINDS
        super().__init__(f"{path}: {reason}; ssdzoo reads {kinds}")
        self.reason = reason


def weights_kind(path: str | Path) -> str:
    """"safetensors", "torch", "mindspore", "tensorflow" or "onnx" for a file ssdzoo reads;
    raises ``FileNotFoundError`` or ``WeightsFileError`` for anything else."""
    path = Path(path)
    if is_tensorflow_file(path):  # .pb, a checkpoint (file, prefix or folder), a SavedModel folder
        return "tensorflow"
    if path.is_dir():
        raise WeightsFileError(path, "a folder without a TensorFlow checkpoint (*.index) or saved_model.pb")
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9:
        (header_size,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_size < path.stat().st_size:
            return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "torch"
    if path.suffix == ".ckpt":
        return "mindspore"
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix == ".safetensors":
        raise WeightsFileError(path, "not a safetensors file (damaged or truncated header)")
    if path.suffix in (".pt", ".pth", ".bin"):
        raise WeightsFileError(path, "not a PyTorch file (neither a zip archive nor a pickle)")
    raise WeightsFileError(path, "not a weights file ssdzoo recognizes")


def converted_recipe(path: str | Path) -> Path | None:
    """The recipe ``ssdzoo convert`` wrote beside a converted ``.safetensors`` (the same name,
    .yaml), if it is there."""
    path = Path(path)
    recipe = path.with_suffix(".yaml")
    return recipe if path.suffix == ".safetensors" and recipe.is_file() else None


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a safetensors or PyTorch weights file (an ssdzoo checkpoint's "model")."""
    path = Path(path)
    kind = weights_kind(path)
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsFileError(path, f"a damaged safetensors file ({err})") from err
    if kind != "torch":
        raise WeightsFileError(path, f"a {kind} file, not a state dict")
    obj = _torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsFileError(path, "a PyTorch file that holds no state dict of tensors")
    return obj


def _torch_load(path: Path) -> object:
    """``torch.load(weights_only=True)`` with ssdzoo's own one-line errors: torch's advice to
    re-run with ``weights_only=False`` would execute the file's code, which ssdzoo never does."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsFileError(path, "it holds pickled Python objects besides tensors (a whole pickled "
                                     "model or optimizer?), which ssdzoo does not unpickle: save a state "
                                     "dict (model.state_dict()) or safetensors instead") from err
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError) as err:
        raise WeightsFileError(path, "a damaged or truncated PyTorch file") from err


def load_model_weights(model: "Detector", path: str | Path, cfg: "Config") -> None:
    """Fill every parameter and buffer of ``model`` from ``path``; fail naming what's missing."""
    path = Path(path)
    kind = weights_kind(path)
    if kind == "mindspore":
        state = mindspore_to_ssdzoo(path, model, cfg)
    elif kind == "tensorflow":
        conversion = tensorflow_to_ssdzoo(path, model, cfg)
        log_dropped(str(path), conversion.dropped)
        state = conversion.state
    elif kind == "onnx":
        raise WeightsFileError(path, "an ONNX graph, which runs as it is (ssdzoo predict --checkpoint, "
                                     "ssdzoo.inference.Predictor) but cannot fill a PyTorch model")
    else:
        state = read_state_dict(path)
        torchvision = identify_torchvision(state, path)
        if torchvision is not None:  # torchvision's SSD names; its recipe gives the numerics
            state = torchvision_to_ssdzoo(torchvision, model, cfg).state
    try:
        load_exact(model, state, source=str(path))
    except ValueError as err:
        recipe = converted_recipe(path)
        if recipe is None:
            raise
        first = str(err).split(": ", 1)[-1].split("; ")[0].split(", ")[0]  # one of the problems load_exact lists
        raise ValueError(f"{path} does not fit the config's model ({first}, ...): `ssdzoo convert` wrote "
                         f"its recipe beside it, {recipe}: use that as the config (ssdzoo predict {recipe} "
                         f"--checkpoint {path} ...)") from None
    _check_converted_recipe(path, cfg)


# what a converted model computes besides its tensors' shapes: a config without these computes otherwise
NUMERICS_KEYS = ("anchor_centres", "image_resize", "nms_plus_one", "explicit_aspect_ratios", "mean", "std",
                 "anchor_order", "anchor_scales", "anchor_clip", "decode_max_log_scale", "score_activation",
                 "clip_boxes")


def _check_converted_recipe(path: Path, cfg: "Config") -> None:
    """Weights that loaded from a converted file, with a config whose layers or numerics differ
    from the recipe converted with them: a warning naming the keys and the recipe."""
    from .config import MODEL_KEYS, ConfigError, load_config

    recipe = converted_recipe(path)
    if recipe is None:
        return
    try:
        converted = load_config(recipe)
    except ConfigError:
        return
    differ = [k for k in (*MODEL_KEYS, *NUMERICS_KEYS) if getattr(cfg, k) != getattr(converted, k)]
    if differ:
        log.warning("%s loaded, but the config differs from %s, the recipe `ssdzoo convert` wrote with it, in %s: "
                    "the model will not compute what the converted one does (use %s as the config)", path, recipe,
                    ", ".join(differ), recipe)


def load_backbone_weights(model: "Detector", path: str | Path, cfg: "Config") -> None:
    """Fill the backbone from a timm checkpoint (or a MindCV backbone .ckpt).

    The classifier and other layers the detector pruned are dropped and logged; a backbone
    parameter the file lacks is an error.
    """
    path = Path(path)
    kind = weights_kind(path)
    if kind == "mindspore":
        state = mindcv_backbone_to_timm(path, model.backbone.model, cfg)
    elif kind in ("tensorflow", "onnx"):
        raise WeightsFileError(path, f"a {kind} file; backbone_ckpt_path takes a timm state dict, "
                                     "safetensors or a MindCV .ckpt")
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
