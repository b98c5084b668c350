"""`ssdzoo eval`: COCO mAP of a checkpoint on the config's val split."""

from __future__ import annotations

import argparse
import sys

from .common import config_args, load_config_for_weights

HELP = "COCO mAP of a checkpoint on the config's val split"


def run(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..engine.distributed import DistInfo, resolve_device
    from ..engine.evaluate import evaluate, evaluate_predictor, format_table, write_metrics_json
    from ..model import build_model

    cfg = load_config_for_weights(args.config, args.overrides, args.checkpoint)
    device = resolve_device(cfg.device, DistInfo())
    dataset = load_dataset(cfg.data_dir, cfg, train=False)
    if str(args.checkpoint).endswith(".onnx"):  # an `ssdzoo export` graph, float or int8, in onnxruntime
        from ..inference import Predictor

        predictor = Predictor.from_weights(cfg, args.checkpoint, device=str(device))
        stats = evaluate_predictor(predictor, dataset, cfg, progress=sys.stderr.isatty())
    else:
        model = build_model(cfg, weights=args.checkpoint).to(device)
        stats = evaluate(model, dataset, cfg, device=device, progress=sys.stderr.isatty())
    print(format_table(stats))
    if args.json:
        write_metrics_json(stats, args.json, config=args.config, checkpoint=str(args.checkpoint))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_args(p)
    p.add_argument("--checkpoint", required=True,
                   help="ssdzoo checkpoint, safetensors, MindSpore .ckpt, TensorFlow OD API graph (.pb) / "
                        "checkpoint, or an .onnx file from `ssdzoo export` (float or int8, run by onnxruntime)")
    p.add_argument("--json", metavar="FILE", help="write the COCO numbers (AP, AP50, ... in 0..1) here")
