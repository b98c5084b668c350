"""`ssdzoo prepare`: pack a COCO folder into sharded, checksummed Arrow files."""

from __future__ import annotations

import argparse
import sys

HELP = "pack a COCO folder into sharded, checksummed Arrow files"


def run(args: argparse.Namespace) -> int:
    from ..data.packed import verify_packed
    from ..data.prepare import prepare_coco

    if args.source == "verify":
        problems = [p for folder in args.folders for p in verify_packed(folder)]
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(args.folders)} folder(s) checked: {'intact' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    summaries = prepare_coco(args.src, args.out, splits=args.splits, workers=args.workers,
                             shard_size=args.shard_size, overwrite=args.overwrite)
    for split, s in summaries.items():
        print(f"{split}: {s['images']} images, {s['boxes']} boxes, {len(s['skipped'])} skipped, "
              f"{s['shards']} shards, {s['images_per_second']} img/s -> {args.out}/{split}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    import os

    sources = p.add_subparsers(dest="source", required=True)
    coco = sources.add_parser("coco", help="COCO 2017 (annotations/instances_{split}.json + {split}/)")
    coco.add_argument("src", help="COCO root folder")
    coco.add_argument("out", help="output folder; each split goes to OUT/{split}")
    coco.add_argument("--splits", nargs="+", default=None,
                      help="splits to pack (default: those of train2017 val2017 that exist)")
    coco.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                      help="decoding processes (default: CPU cores, at most 8)")
    coco.add_argument("--shard-size", type=int, default=1024, help="images per shard")
    coco.add_argument("--overwrite", action="store_true", help="replace existing OUT/{split}")
    verify = sources.add_parser("verify", help="check packed split folders against their checksums")
    verify.add_argument("folders", nargs="+", help="packed split folders (OUT/{split})")
