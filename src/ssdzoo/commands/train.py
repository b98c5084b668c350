"""`ssdzoo train`: train a config (torchrun --nproc_per_node N -m ssdzoo train ... for DDP)."""

from __future__ import annotations

import argparse

from .common import config_args

HELP = "train a config (torchrun --nproc_per_node N -m ssdzoo train ... for DDP)"


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..engine.train import train

    summary = train(load_config(args.config, args.overrides), resume=args.resume, epochs=args.epochs,
                    weights=args.weights)
    if summary["best"]:
        print(f"best checkpoint: {summary['best']} (AP {summary['best_ap']:.4f})")
    print(f"last checkpoint: {summary['last']}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_args(p)
    p.add_argument("--resume", metavar="CKPT", help="continue a run from its last.pt")
    p.add_argument("--weights", metavar="FILE",
                   help="start a new run from a full model (ssdzoo checkpoint, safetensors, the seed's .ckpt) "
                        "trained on other classes: what fits loads, new class layers start afresh")
    p.add_argument("--epochs", type=int, metavar="N", help="stop after N epochs of this run (resume later)")
