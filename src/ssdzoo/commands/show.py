"""`ssdzoo show`: draw a grid of dataset samples with their boxes and class names."""

from __future__ import annotations

import argparse

HELP = "draw a grid of dataset samples with their boxes and class names"


def run(args: argparse.Namespace) -> int:
    from ..config import config_from_dict, load_config
    from ..show import show_samples
    from ..words import counted

    if args.config:
        cfg = load_config(args.config, ["classes=null", "num_classes=null", *args.set])
    else:
        cfg = config_from_dict({"classes": None, "num_classes": None})
    result = show_samples(args.data, args.out, cfg=cfg, split=args.split, augment=args.augment, count=args.n,
                          seed=args.seed, cell=args.cell)
    what = f"augmented as in training at {cfg.image_size[0]}x{cfg.image_size[1]}" if args.augment else "as stored"
    print(f"{counted(len(result.indices), 'sample')} of {result.split} ({what}), "
          f"{counted(result.boxes, 'box', 'boxes')} -> {result.path}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a packed dataset (its root or one split folder) or a COCO root")
    p.add_argument("--out", required=True, metavar="FILE.png", help="the picture to write")
    p.add_argument("--split", help="the split to draw (default: the split DATA is, else train_split, "
                                   "else a packed split named train*)")
    p.add_argument("--augment", action="store_true",
                   help="draw the training pipeline's output (IoU crop, resize, flip, colour) instead")
    p.add_argument("-n", type=int, default=16, help="samples (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="which samples, and their augmentation")
    p.add_argument("--cell", type=int, default=256, help="pixels per sample (default: 256)")
    p.add_argument("--config", help="recipe whose image_size and normalization --augment uses "
                                    "(default: the schema's, 300x300)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
