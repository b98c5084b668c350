"""`ssdzoo <command>`: argument parsing only; the work happens in the modules it calls."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML recipe, or a name in configs/ (ssd_mobilenetv2, demo, ...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def cmd_info(args: argparse.Namespace) -> int:
    from .config import load_config
    from .info import model_info

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


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine.train import train

    summary = train(load_config(args.config, args.overrides), resume=args.resume)
    if summary["best"]:
        print(f"best checkpoint: {summary['best']} (AP {summary['best_ap']:.4f})")
    print(f"last checkpoint: {summary['last']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .config import load_config
    from .data import load_dataset
    from .engine.distributed import DistInfo, resolve_device
    from .engine.evaluate import evaluate, format_table
    from .model import build_model

    cfg = load_config(args.config, args.overrides)
    device = resolve_device(cfg.device, DistInfo())
    model = build_model(cfg, weights=args.checkpoint).to(device)
    stats = evaluate(model, load_dataset(cfg.data_dir, cfg, train=False), cfg, device=device,
                     progress=sys.stderr.isatty())
    print(format_table(stats))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({**stats, "config": args.config, "checkpoint": str(args.checkpoint)}, f, indent=2)
    return 0


def _train_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--resume", metavar="CKPT", help="continue a run from its last.pt")


def _eval_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--checkpoint", required=True, help="ssdzoo checkpoint, safetensors or MindSpore .ckpt")
    p.add_argument("--json", metavar="FILE", help="write the COCO numbers (AP, AP50, ... in 0..1) here")


def cmd_convert(args: argparse.Namespace) -> int:
    from .config import load_config
    from .convert import convert_checkpoint

    conversion = convert_checkpoint(args.ckpt, load_config(args.config), args.out)
    unused = f"; {len(conversion.dropped)} entries of the checkpoint not used (logged above)" \
        if conversion.dropped else ""
    print(f"wrote {args.out}: {len(conversion.state)} tensors{unused}")
    return 0


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="a MindSpore .ckpt: the seed's SSD or a MindCV backbone")
    p.add_argument("--config", required=True, help="the recipe the checkpoint belongs to (YAML or name)")
    p.add_argument("--out", required=True, help="the .safetensors file to write")


COMMANDS = {
    "info": (cmd_info, "parameters, FLOPs, default boxes and feature maps of a config",
             lambda p: (_config_args(p), p.add_argument("--json", action="store_true",
                                                        help="print one JSON object"))),
    "train": (cmd_train, "train a config (torchrun --nproc_per_node N -m ssdzoo train ... for DDP)", _train_args),
    "eval": (cmd_eval, "COCO mAP of a checkpoint on the config's val split", _eval_args),
    "convert": (cmd_convert, "a MindSpore .ckpt (seed SSD or MindCV backbone) as safetensors, "
                             "without MindSpore", _convert_args),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssdzoo", description="SSD object detection on timm backbones")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text, add_args) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return COMMANDS[args.command][0](args) or 0
    except (ValueError, FileNotFoundError) as err:  # ConfigError is a ValueError
        print(f"ssdzoo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
