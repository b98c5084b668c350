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


def weights_config(args: argparse.Namespace, weights):
    """The config of a command that loads ``weights``: CONFIG if given, else the checkpoint's."""
    from ..checkpoint_config import config_for_weights, split_config_argument

    config, overrides = split_config_argument(args.config, args.overrides, rest_are_overrides=True)
    return config_for_weights(config, overrides, weights)
