"""`ssdzoo eval`: COCO mAP (overall and per class, with PR curves) of a checkpoint on the val split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import optional_config_args, weights_config

HELP = "COCO mAP (overall and per class, with PR curves) of a checkpoint on the val split"


def run(args: argparse.Namespace) -> int:
    from ..data import load_dataset, resolve_classes
    from ..engine.distributed import DistInfo, resolve_device
    from ..engine.evaluate import (evaluate_predictor, evaluate_report, format_per_class, format_table,
                                   write_metrics_json)
    from ..engine.pr_plot import plot_pr_curves
    from ..model import build_model
    from ..weights import weights_kind

    cfg = weights_config(args, args.checkpoint)
    try:
        cfg = resolve_classes(cfg)
        dataset = load_dataset(cfg.data_dir, cfg, train=False, split=args.split)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}{_data_dir_origin(args, cfg)}") from None
    device = resolve_device(cfg.device, DistInfo())
    voc = args.metric == "voc"
    if weights_kind(args.checkpoint) == "onnx":  # an `ssdzoo export` graph, float or int8, in onnxruntime
        from ..inference import Predictor

        predictor = Predictor.from_weights(cfg, args.checkpoint, device=str(device))
        report = evaluate_predictor(predictor, dataset, cfg, progress=sys.stderr.isatty(), voc=voc)
    else:
        model = build_model(cfg, weights=args.checkpoint).to(device)
        report = evaluate_report(model, dataset, cfg, device=device, progress=sys.stderr.isatty(), voc=voc)
    stats = report.coco.stats
    print(format_table(stats))
    print()
    print(format_per_class(report.coco.per_class, report.voc.per_class if report.voc else None))
    if report.voc is not None:
        print(f"\nVOC mAP at IoU 0.5 ({len(dataset)} images, difficult ignored): "
              f"{_number(report.voc.map07)} (VOC2007, 11 points), {_number(report.voc.map10)} (VOC2010+, area)")
    if args.json:
        write_metrics_json(stats, args.json, config=args.config or f"saved in {args.checkpoint}",
                           checkpoint=str(args.checkpoint), data=dataset.source, **report.to_json())
    pr_plot = args.pr_plot or (Path(args.json).with_name(f"{Path(args.json).stem}_pr.png") if args.json else None)
    if pr_plot:
        print(f"precision-recall curves per class: {plot_pr_curves(report.coco, pr_plot)}")
    return 0


def _data_dir_origin(args: argparse.Namespace, cfg) -> str:
    """Where the data_dir that was not found came from, when that is not obvious: a named
    config's data_dir wins over the one saved in the checkpoint."""
    from ..checkpoint_config import saved_config
    from ..config import parse_overrides
    from .common import split_config

    config, overrides = split_config(args)
    if config is None or "data_dir" in parse_overrides(overrides):
        return ""
    saved = (saved_config(args.checkpoint) or {}).get("data_dir")
    trained = f" ({args.checkpoint} was trained on data_dir={saved})" if saved and saved != cfg.data_dir else ""
    return (f". data_dir={cfg.data_dir} is the config {config}'s: a config named on the command line wins over "
            f"the one saved in --checkpoint{trained}; give data_dir=DIR, or leave the config out")


def _number(value) -> str:
    return f"{value:.4f}" if value is not None else "-"


def add_arguments(p: argparse.ArgumentParser) -> None:
    optional_config_args(p)
    p.add_argument("--checkpoint", required=True,
                   help="ssdzoo checkpoint, safetensors, MindSpore .ckpt, TensorFlow OD API graph (.pb) / "
                        "checkpoint, or an .onnx file from `ssdzoo export` (float or int8, run by onnxruntime)")
    p.add_argument("--json", metavar="FILE", help="write the COCO numbers (AP, AP50, ... in 0..1) and "
                                                  "per_class {name: {AP, AP50}} here")
    p.add_argument("--pr-plot", metavar="FILE.png",
                   help="precision-recall curves per class (default with --json: FILE_pr.png beside it)")
    p.add_argument("--metric", choices=("coco", "voc"), default="coco",
                   help="voc: also VOC's mAP at IoU 0.5, by the VOC2007 11-point and the VOC2010+ area "
                        "rules (difficult objects ignored)")
    p.add_argument("--split", help="the split to score (default: the config's val_split)")
