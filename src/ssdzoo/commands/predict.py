"""`ssdzoo predict`: draw detections on images and write them as COCO results JSON."""

from __future__ import annotations

import argparse

from .common import load_config_for_weights

HELP = "draw detections on images and write them as COCO results JSON"


def run(args: argparse.Namespace) -> int:
    from ..checkpoint_config import split_config_argument
    from ..config import load_config
    from ..inference import Predictor
    from ..predict import read_category_ids, run_predict

    config, args.images = split_config_argument(args.config, args.images, rest_are_overrides=False)
    if not args.images:
        raise ValueError("no images given: ssdzoo predict [CONFIG] IMAGES... --checkpoint FILE --out DIR")
    weights = args.checkpoint or (load_config(config, args.set).ckpt_path if config else None)
    if not weights:
        raise ValueError("no weights: pass --checkpoint (or set ckpt_path in the config)")
    cfg = load_config_for_weights(config, args.set, weights)
    predictor = Predictor.from_weights(cfg, weights, device=args.device, min_score=args.score)
    category_ids = read_category_ids(args.category_ids, cfg) if args.category_ids else None
    summary = run_predict(predictor, args.images, args.out, category_ids=category_ids, batch_size=args.batch)
    print(f"{len(summary.written)} images with {summary.num_detections} detections "
          f"(score > {predictor.min_score}) written to {args.out}/")
    if summary.skipped:
        print(f"skipped {len(summary.skipped)} unreadable file(s): {', '.join(map(str, summary.skipped))}")
    print(f"detections (COCO results format): {summary.json_path}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", metavar="CONFIG",
                   help="a YAML recipe, or a name in configs/ (default: the config saved in --checkpoint)")
    p.add_argument("images", nargs="*", metavar="IMAGES", help="image files or folders of images")
    p.add_argument("--checkpoint", help="ssdzoo checkpoint (.pt, .safetensors), MindSpore .ckpt, TensorFlow "
                                        "OD API graph (.pb) or checkpoint, or an .onnx file from "
                                        "`ssdzoo export` (default: ckpt_path)")
    p.add_argument("--out", required=True, help="folder for the drawn images and detections.json")
    p.add_argument("--score", type=float, default=None,
                   help="keep detections scoring above this (default: the config's min_score)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass (default: 8)")
    p.add_argument("--category-ids", help="JSON: a list of category ids for labels 1.., or a COCO "
                                          "annotation file to map class names to its ids")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
