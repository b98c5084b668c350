"""`ssdzoo train`: train a config (torchrun --nproc_per_node N -m ssdzoo train ... for DDP)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .common import config_args

HELP = "train a config (torchrun --nproc_per_node N -m ssdzoo train ... for DDP)"

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config, parse_overrides
    from ..engine.distributed import DistInfo
    from ..engine.preemption import TrainingInterrupted
    from ..engine.train import train

    cfg = load_config(args.config, args.overrides)
    if args.weights:
        from ..finetune import weights_normalization

        cfg = weights_normalization(cfg, args.weights, set(parse_overrides(args.overrides)))
    if args.resume not in (None, "auto") and "ckpt_save_dir" not in parse_overrides(args.overrides):
        folder = str(Path(args.resume).parent)  # the run continues where its checkpoints are
        if Path(folder).resolve() != Path(cfg.ckpt_save_dir).resolve():
            log.info("continuing in %s, the folder of %s (ckpt_save_dir=DIR to write elsewhere)", folder, args.resume)
        cfg = cfg.replace(ckpt_save_dir=folder)
    main = DistInfo.from_env().is_main
    try:
        summary = train(cfg, resume=args.resume, epochs=args.epochs, overwrite=args.overwrite,
                        weights=args.weights)
    except TrainingInterrupted as stop:
        if main:
            print(f"ssdzoo train: {stop}", file=sys.stderr)
        return stop.exit_status
    if main:  # under torchrun every rank returns the same summary: print it once
        if summary["best"]:
            print(f"best checkpoint: {summary['best']} (AP {summary['best_ap']:.4f})")
        print(f"last checkpoint: {summary['last']}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_args(p)
    p.add_argument("--resume", metavar="CKPT|auto",
                   help="continue a run exactly from a checkpoint (its folder becomes ckpt_save_dir unless "
                        "given), or 'auto': from ckpt_save_dir's latest checkpoint if there is one, else start")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a ckpt_save_dir that holds another run (its files are removed)")
    p.add_argument("--weights", metavar="FILE",
                   help="start a new run from a full model (ssdzoo checkpoint, safetensors, the seed's .ckpt, "
                        "a converted TF model) trained on other classes: what fits loads, new class layers start afresh")
    p.add_argument("--epochs", type=int, metavar="N", help="stop after N epochs of this run (resume later)")
