"""`ssdzoo demo`: synthesize a dataset, train, evaluate and predict on this machine."""

from __future__ import annotations

import argparse

HELP = "synthesize a dataset, train, evaluate and predict on this machine"


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out, seed=args.seed, overrides=args.overrides, overwrite=args.overwrite)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of configs/demo.yaml")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    p.add_argument("--overwrite", action="store_true",
                   help="train anew (by default an interrupted demo continues, a finished one is evaluated again)")
