"""`ssdzoo predict`: detections on images and videos, streamed to JSON Lines, drawn on pictures."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .common import load_config_for_weights

HELP = "detections on images and videos: JSON Lines, COCO results JSON and pictures with boxes"


def run(args: argparse.Namespace) -> int:
    from ..checkpoint_config import split_config_argument
    from ..config import load_config
    from ..inference import Predictor
    from ..predict import default_workers, read_category_ids, run_predict
    from ..words import counted

    config, args.images = split_config_argument(args.config, args.images, rest_are_overrides=False)
    if not args.images:
        raise ValueError("no inputs given: ssdzoo predict [CONFIG] INPUTS... --checkpoint FILE --out DIR")
    weights = args.checkpoint or (load_config(config, args.set).ckpt_path if config else None)
    if not weights:
        raise ValueError("no weights: pass --checkpoint (or set ckpt_path in the config)")
    cfg = load_config_for_weights(config, args.set, weights)
    predictor = Predictor.from_weights(cfg, weights, device=args.device)
    category_ids = read_category_ids(args.category_ids, cfg) if args.category_ids else None
    workers = args.workers if args.workers is not None else default_workers(predictor, draw=args.draw)
    summary = run_predict(predictor, args.images, args.out, category_ids=category_ids, batch_size=args.batch,
                          workers=workers, draw=args.draw, draw_score=args.score, resume=args.resume,
                          every=args.every, settings={"weights": str(weights)})
    done = counted(summary.images, "image") + (f" and {counted(summary.videos, 'video')}" if summary.videos else "")
    if summary.resumed:
        done += f" ({counted(summary.resumed, 'input')} done by the earlier run)"
    drawn = f", boxes over {args.score} drawn" if args.draw else ""
    print(f"{done} predicted into {Path(args.out)}{os.sep}{drawn}")
    if summary.skipped:
        print(f"skipped {counted(len(summary.skipped), 'unreadable input')}: "
              + ", ".join(str(path) for path, _ in summary.skipped))
    print(f"detections (scores > {predictor.min_score}): {summary.jsonl_path} (one line per input), "
          f"{summary.json_path} ({counted(summary.num_detections, 'row')}, COCO results format)")
    return 0


def score(text: str) -> float:
    """--score's type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a score threshold must be in [0, 1], got {text}")
    return value


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..visualize import DEFAULT_DRAW_SCORE

    p.add_argument("config", nargs="?", metavar="CONFIG",
                   help="a YAML recipe, or a name in configs/ (default: the config saved in --checkpoint)")
    p.add_argument("images", nargs="*", metavar="INPUTS",
                   help="image and video files, or folders of them (subfolders included)")
    p.add_argument("--checkpoint", help="ssdzoo checkpoint (.pt, .safetensors), MindSpore .ckpt, TensorFlow "
                                        "OD API graph (.pb) or checkpoint, or an .onnx file from "
                                        "`ssdzoo export`, int8 too (default: ckpt_path)")
    p.add_argument("--out", required=True, help="folder for detections.jsonl, detections.json and the drawn pictures")
    p.add_argument("--score", type=score, default=DEFAULT_DRAW_SCORE,
                   help="draw boxes scoring above this, in [0, 1] (default: %(default)s); the detection "
                        "files keep every score above the config's min_score (--set min_score=X)")
    p.add_argument("--no-draw", dest="draw", action="store_false",
                   help="write the detections only, no pictures or videos")
    p.add_argument("--resume", action="store_true",
                   help="continue a stopped run into the same --out: inputs already done are skipped")
    p.add_argument("--every", type=positive, default=1, metavar="K", help="videos: predict every K-th frame")
    p.add_argument("--workers", type=int, default=None,
                   help="processes decoding and resizing images, and as many drawing (default: 2; on 2 "
                        "cores a CPU network gets 1 when drawing, 0 with --no-draw; 0: none)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--batch", type=positive, default=8, help="images per forward pass (default: 8)")
    p.add_argument("--category-ids", help="JSON: a list of category ids for labels 1.., or a COCO "
                                          "annotation file to map class names to its ids")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
