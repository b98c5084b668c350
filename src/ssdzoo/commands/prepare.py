"""`ssdzoo prepare`: pack a COCO, Pascal VOC or YOLO dataset into sharded, checksummed Arrow files."""

from __future__ import annotations

import argparse
import sys

HELP = "pack a COCO, Pascal VOC or YOLO dataset into sharded, checksummed Arrow files"


def run(args: argparse.Namespace) -> int:
    from ..data import prepare
    from ..data.dataset import available_cores
    from ..data.packed import verify_packed

    if args.source == "verify":
        problems = [p for folder in args.folders for p in verify_packed(folder)]
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(args.folders)} folder(s) checked: {'intact' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    workers = args.workers if args.workers is not None else min(8, available_cores())
    common = dict(workers=workers, shard_size=args.shard_size, overwrite=args.overwrite)
    if args.background is not None:
        common["keep_background"] = args.background
    if args.source == "coco" and args.annotations:
        if args.src is not None:
            raise ValueError(f"give either a COCO root ({args.src}) or --annotations, not both")
        if not args.split:
            raise ValueError("--annotations needs --split NAME (the folder under OUT it is packed into)")
        summaries = prepare.prepare_coco_export(args.annotations, args.out, split=args.split,
                                                images=args.images, **common)
    elif args.source == "coco":
        if args.src is None:
            raise ValueError("give a COCO 2017 root (SRC OUT), or --annotations FILE --split NAME OUT")
        if args.images or args.split:
            raise ValueError("--images and --split go with --annotations (a COCO root's splits: --splits)")
        summaries = prepare.prepare_coco(args.src, args.out, splits=args.splits, **common)
    elif args.source == "voc":
        classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
        summaries = prepare.prepare_voc(args.root, args.out, splits=args.splits, classes=classes, **common)
    else:
        summaries = prepare.prepare_yolo(args.data, args.out, splits=args.splits, **common)
    for split, summary in summaries.items():
        print(prepare.format_summary(summary, f"{args.out}/{split}"))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    sources = p.add_subparsers(dest="source", required=True)
    coco = sources.add_parser(
        "coco", help="COCO 2017 (SRC/annotations/instances_{split}.json + SRC/{split}/), or any COCO-format "
                     "export (--annotations FILE --split NAME)")
    coco.add_argument("src", nargs="?", help="COCO 2017 root folder (not with --annotations)")
    coco.add_argument("out", help="output folder; each split goes to OUT/{split}")
    coco.add_argument("--splits", nargs="+", default=None,
                      help="splits of a COCO root to pack (default: those of train2017 val2017 that exist)")
    coco.add_argument("--annotations", metavar="FILE",
                      help="one COCO-format json (Roboflow's _annotations.coco.json, CVAT's "
                           "instances_default.json ...)")
    coco.add_argument("--images", metavar="DIR",
                      help="the folder its file_names are relative to (default: the json's folder, or "
                           "images/ beside an annotations/ folder)")
    coco.add_argument("--split", metavar="NAME", help="with --annotations: pack into OUT/NAME")
    voc = sources.add_parser("voc", help="Pascal VOC (VOCdevkit/ with VOC2007/, VOC2012/, or one of them)")
    voc.add_argument("root", help="VOCdevkit, or a VOC2007 / VOC2012 folder")
    voc.add_argument("out", help="output folder; each split goes to OUT/{split}")
    voc.add_argument("--splits", nargs="+", default=None,
                     help="ImageSets/Main lists to pack (default: those of train val trainval test present)")
    voc.add_argument("--classes", help="comma-separated class names, in label order (default: VOC's 20 "
                                       "in their order if the data uses only those, else the names found, sorted)")
    yolo = sources.add_parser("yolo", help="YOLO / ultralytics (data.yaml, images/{split}, labels/{split})")
    yolo.add_argument("data", help="the dataset's data.yaml")
    yolo.add_argument("out", help="output folder; each split goes to OUT/{split}")
    yolo.add_argument("--splits", nargs="+", default=None, help="splits to pack (default: train val test named)")
    for sub in (coco, voc, yolo):
        _common_options(sub)
    verify = sources.add_parser("verify", help="check packed split folders against their checksums")
    verify.add_argument("folders", nargs="+", help="packed split folders (OUT/{split})")


def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes (default: the CPU cores this process may use, at most 8)")
    p.add_argument("--shard-size", type=int, default=1024, help="images per shard")
    p.add_argument("--overwrite", action="store_true", help="replace existing OUT/{split}")
    p.add_argument("--background", action=argparse.BooleanOptionalAction, default=None,
                   help="keep images without any annotation as background images (default: yes; "
                        "a COCO 2017 root: no, as the seed)")
