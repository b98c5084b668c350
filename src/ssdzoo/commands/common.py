"""Arguments several commands share."""

from __future__ import annotations

import argparse


def config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML recipe, or a name in configs/ (ssd_mobilenetv2, demo, ...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
