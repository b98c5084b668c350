"""Arguments several commands share."""

from __future__ import annotations

import argparse


def config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML recipe, or a name in configs/ (ssd_mobilenetv2, demo, ...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")



def load_config_for_weights(config: str, overrides, weights):
    """The config to run ``weights`` with: for a TensorFlow OD API file, the recipe with the
    file's layers and numerics, then ``overrides`` (``ssdzoo.convert.tensorflow_config``); else
    ``load_config(config, overrides)``."""
    from ..config import load_config
    from ..convert import is_tensorflow_file, tensorflow_config

    if weights is None or not is_tensorflow_file(weights):
        return load_config(config, overrides)
    cfg = tensorflow_config(load_config(config), weights, overrides)
    print(f"{weights}: a TensorFlow OD API model; using its layers and numerics "
          f"({cfg.num_classes - 1} class(es), {cfg.image_size[0]}x{cfg.image_size[1]} input)")
    return cfg
