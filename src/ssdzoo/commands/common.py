"""Arguments several commands share."""

from __future__ import annotations

import argparse


def config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML recipe, or a name in configs/ (ssd_mobilenetv2, demo, ...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def optional_config_args(p: argparse.ArgumentParser) -> None:
    """CONFIG may be left out where --checkpoint holds the config it was trained with."""
    p.add_argument("config", nargs="?", help="a YAML recipe, or a name in configs/ (default: the config "
                                             "saved in --checkpoint)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def split_config(args: argparse.Namespace) -> tuple:
    """(CONFIG or None, overrides): a leading ``key=value`` is an override, not a config."""
    from ..checkpoint_config import split_config_argument

    return split_config_argument(args.config, args.overrides, rest_are_overrides=True)


def load_config_for_weights(config, overrides, weights):
    """The config to run ``weights`` with: for a TensorFlow OD API file, the recipe with the
    file's layers and numerics, then ``overrides`` (``ssdzoo.convert.tensorflow_config``); else
    the config given (checked against the one saved in an ssdzoo checkpoint or exported graph),
    or without one the saved config (``ssdzoo.checkpoint_config``)."""
    from ..checkpoint_config import config_for_weights
    from ..config import load_config
    from ..convert import is_tensorflow_file, tensorflow_config

    if weights is not None and not is_tensorflow_file(weights):
        torchvision = _torchvision_source(weights)
        if torchvision is not None:  # a torchvision SSD: its recipe (or the config given) and its classes
            from ..convert.torchvision import recipe_path, torchvision_config

            return torchvision_config(load_config(config or recipe_path(torchvision.family), overrides), torchvision)
    if weights is None or not is_tensorflow_file(weights):
        return config_for_weights(config, overrides, weights)
    if config is None:
        raise ValueError(f"{weights}: a TensorFlow file carries no ssdzoo config: name the recipe whose "
                         "training and evaluation settings to keep (its layers come from the file)")
    cfg = tensorflow_config(load_config(config), weights, overrides)
    print(f"{weights}: a TensorFlow OD API model; using its layers and numerics "
          f"({cfg.num_classes - 1} class(es), {cfg.image_size[0]}x{cfg.image_size[1]} input)")
    return cfg


def weights_config(args: argparse.Namespace, weights):
    """The config of a command that loads ``weights``: CONFIG if given, else the checkpoint's."""
    config, overrides = split_config(args)
    return load_config_for_weights(config, overrides, weights)


def _torchvision_source(weights):
    """A torchvision SSD state dict, or None (any other file, or one that is not there)."""
    from ..convert.torchvision import read_torchvision

    return read_torchvision(weights)
