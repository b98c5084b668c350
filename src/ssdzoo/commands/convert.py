"""`ssdzoo convert`: a MindSpore .ckpt (seed SSD or MindCV backbone) as safetensors, without MindSpore."""

from __future__ import annotations

import argparse

HELP = "a MindSpore .ckpt (seed SSD or MindCV backbone) as safetensors, without MindSpore"


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..convert import convert_checkpoint

    conversion = convert_checkpoint(args.ckpt, load_config(args.config), args.out)
    unused = f"; {len(conversion.dropped)} entries of the checkpoint not used (logged above)" \
        if conversion.dropped else ""
    print(f"wrote {args.out}: {len(conversion.state)} tensors{unused}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="a MindSpore .ckpt: the seed's SSD or a MindCV backbone")
    p.add_argument("--config", required=True, help="the recipe the checkpoint belongs to (YAML or name)")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
