"""`ssdzoo synth`: write the synthetic shapes dataset (COCO layout, JPEG files)."""

from __future__ import annotations

import argparse

HELP = "write the synthetic shapes dataset (COCO layout, JPEG files)"


def run(args: argparse.Namespace) -> int:
    from ..data.synthetic import make_synthetic_coco

    summary = make_synthetic_coco(args.out, seed=args.seed, num_train=args.train, num_val=args.val,
                                  workers=args.workers, overwrite=args.overwrite)
    for split, s in summary.items():
        print(f"{split}: {s['images']} images, {s['boxes']} boxes ({s['small_boxes']} small) "
              f"-> {args.out}/{split}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder (COCO layout)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=3000, help="training images")
    p.add_argument("--val", type=int, default=300, help="validation images")
    p.add_argument("--workers", type=int, default=1, help="processes")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder whole")
