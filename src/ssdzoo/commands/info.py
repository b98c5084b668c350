"""`ssdzoo info`: parameters, FLOPs, default boxes and feature maps of a config."""

from __future__ import annotations

import argparse
import json

from .common import config_args

HELP = "parameters, FLOPs, default boxes and feature maps of a config"


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..info import model_info

    info = model_info(load_config(args.config, args.overrides), name=args.config)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['config']}: {info['backbone']} at {info['image_size'][0]}x{info['image_size'][1]}")
    print(f"  trainable parameters  {info['params']:,}")
    print(f"  all parameters + BN   {info['params_with_buffers']:,}")
    print(f"  GFLOPs                {info['gflops']:.3f}  (one image; a multiply-add counts 2)")
    print(f"  default boxes         {info['anchors']:,}")
    print("  level  feature map            boxes/location")
    for i, level in enumerate(info["levels"]):
        c, h, w = level["shape"]
        print(f"  {i:>5}  {c:>5} x {h:>3} x {w:<3}        {level['boxes_per_location']}")
    return 0
