"""A checkpoint knows its model: the config that eval, predict and export use with a weights file.

An ssdzoo checkpoint (``best.pt``, ``last.pt``) holds the resolved config it was trained with,
classes included, and an ``ssdzoo export`` graph holds it in its metadata. So

    ssdzoo predict --checkpoint runs/demo/best.pt photos/ --out preds/

needs no recipe: the saved config is used, with any ``key=value`` overrides on top. A config
given on the command line still wins; if it builds another network than the checkpoint's
(backbone, neck, classes, default boxes), that is one error naming what the checkpoint was
trained as, instead of a list of hundreds of tensor names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from .config import (CONFIG_DIR, MODEL_KEYS, Config, apply_overrides, config_from_dict, describe_model, load_config,
                     parse_overrides, resolve_config_path)


def saved_config(weights: str | Path) -> Optional[dict]:
    """The config saved in an ssdzoo checkpoint (.pt) or exported .onnx graph; None for other
    files (safetensors, MindSpore .ckpt) and for files without one."""
    path = Path(weights)
    if not path.is_file() or path.suffix in (".safetensors", ".ckpt"):
        return None
    if path.suffix == ".onnx":
        return _onnx_config(path)
    import torch

    try:  # memory-mapped: the tensors are not read, only the small config
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None  # not a checkpoint: the weights loader says why, naming the file
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    return config if isinstance(config, dict) else None


def _onnx_config(path: Path) -> Optional[dict]:
    try:
        import onnx
    except ImportError:
        return None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return None
    meta = {p.key: p.value for p in model.metadata_props}
    try:
        config = json.loads(meta["ssdzoo.config"])
    except (KeyError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def is_config_reference(text: Optional[str]) -> bool:
    """A YAML file, or the name of a recipe in configs/ that is not also an existing path."""
    if not text:
        return False
    path = Path(text)
    if path.suffix in (".yaml", ".yml"):
        return True
    return not path.exists() and path.suffix == "" and (CONFIG_DIR / f"{path.name}.yaml").is_file()


def split_config_argument(config: Optional[str], rest: Sequence[str], *,
                          rest_are_overrides: bool) -> tuple[Optional[str], list[str]]:
    """An optional leading CONFIG positional, told apart from what follows it: ``key=value``
    overrides (eval, export) or image paths (predict)."""
    rest = list(rest)
    if config is None or is_config_reference(config):
        return config, rest
    if rest_are_overrides and "=" in config and not Path(config).exists():
        return None, [config, *rest]
    if not rest_are_overrides and (Path(config).exists() or Path(config).suffix or not rest):
        return None, [config, *rest]  # an image or folder (a missing one is reported as such)
    resolve_config_path(config)  # neither a path nor a recipe: raises "config file not found: ..."
    return config, rest


def config_for_weights(config: Optional[str], overrides: Sequence[str], weights: Optional[str | Path]) -> Config:
    """The config given (checked against the one saved in ``weights``), else the saved one
    with ``overrides`` applied."""
    saved = saved_config(weights) if weights else None
    if config is None:
        if saved is None:
            from .weights import converted_recipe

            what = f"{weights} carries no config" if weights else "no --checkpoint and no config"
            recipe = converted_recipe(weights) if weights else None
            beside = f" ({recipe}, which `ssdzoo convert` wrote beside it)" if recipe else ""
            raise ValueError(f"{what}: name the recipe it was trained with{beside} (a YAML file or a name in configs/)")
        return config_from_dict(apply_overrides(saved, parse_overrides(overrides)), source=f"{weights} (saved config)")
    cfg = load_config(config, overrides)
    if saved is not None:
        if cfg.classes is None and saved.get("classes"):  # from the data: the data it was trained on
            cfg = cfg.replace(classes=tuple(saved["classes"]), num_classes=len(saved["classes"]))
        check_fits(cfg, saved, config, weights)
    return cfg


def check_fits(cfg: Config, saved: dict, config: str, weights: str | Path) -> None:
    """One line if ``cfg`` builds another network than the checkpoint was trained as."""
    trained = config_from_dict(saved, source=f"{weights} (saved config)")
    differ = [k for k in MODEL_KEYS if getattr(cfg, k) != getattr(trained, k)]
    if cfg.classes is not None and trained.classes is not None and cfg.classes != trained.classes \
            and "num_classes" not in differ:
        differ.append("classes")
    if differ:
        raise ValueError(f"{weights} was trained as {describe_model(trained)}; the config {config} builds "
                         f"{describe_model(cfg)} ({', '.join(differ)} differ). Leave the config out to use "
                         "the checkpoint's own")
