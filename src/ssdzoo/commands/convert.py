"""`ssdzoo convert`: MindSpore .ckpt or TensorFlow OD API files as safetensors (+ their recipe)."""

from __future__ import annotations

import argparse

HELP = ("MindSpore .ckpt, TensorFlow OD API graphs/checkpoints or torchvision SSD state dicts as safetensors, "
        "without MindSpore or TensorFlow")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..config import load_config, save_config
    from ..convert import convert_checkpoint, is_tensorflow_file, read_tensorflow, tensorflow_config
    from ..convert.tensorflow import convert_tensorflow
    from ..model import build_model

    if not str(args.out).endswith(".safetensors"):
        raise ValueError(f"--out {args.out}: expected a file name ending in .safetensors")
    recipe = Path(args.out).with_suffix(".yaml")
    # the model only gives the conversion its names and shapes: its backbone weights are not read
    if is_tensorflow_file(args.file):
        source = read_tensorflow(args.file)
        cfg = tensorflow_config(load_config(args.config), args.file, args.overrides, label_map=args.labels,
                                source=source)
        conversion = convert_tensorflow(args.file, cfg, args.out, build_model(cfg, init_backbone=False),
                                        source=source)
        print(f"{args.file}: TensorFlow {source.kind}, {source.family}: {cfg.num_classes - 1} class(es), "
              f"{cfg.image_size[0]}x{cfg.image_size[1]} input, {cfg.num_ssd_boxes} anchors")
    elif (torchvision := _torchvision_source(args.file)) is not None:
        if args.labels:
            raise ValueError("--labels takes a TensorFlow label map; it applies to TensorFlow files only")
        from ..convert.torchvision import convert_torchvision, torchvision_config

        cfg = torchvision_config(load_config(args.config, args.overrides), torchvision)
        conversion = convert_torchvision(torchvision, cfg, args.out, build_model(cfg, init_backbone=False))
        print(f"{args.file}: torchvision {torchvision.family}: {cfg.num_classes - 1} class slot(s), "
              f"{cfg.image_size[0]}x{cfg.image_size[1]} input, {cfg.num_ssd_boxes} default boxes")
    else:
        if args.labels:
            raise ValueError("--labels takes a TensorFlow label map; it applies to TensorFlow files only")
        cfg = load_config(args.config, args.overrides)
        conversion, kind = convert_checkpoint(args.file, cfg, args.out, lambda: build_model(cfg, init_backbone=False))
        if kind == "ssd":  # a MindCV backbone converts by names alone, with no model or recipe
            save_config(cfg, recipe, header=f"ssdzoo recipe for {args.out}, converted from {args.file}")
        else:
            recipe = None
    unused = f"; {len(conversion.dropped)} entries of the file not used (logged)" if conversion.dropped else ""
    print(f"wrote {args.out}: {len(conversion.state)} tensors{unused}")
    if recipe:
        print(f"wrote {recipe}: its config (ssdzoo predict {recipe} --checkpoint {args.out} IMAGES --out DIR)")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a MindSpore .ckpt (the seed's SSD or a MindCV backbone), a TensorFlow "
                                "OD API SSD: frozen graph .pb, checkpoint (PREFIX.index, or its folder), "
                                "SavedModel folder, or a torchvision ssd300_vgg16 / ssdlite320_mobilenet_v3_large "
                                "state dict (.pth; --config: the recipe of the same name)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides; for TensorFlow files they win over what the file says")
    p.add_argument("--config", required=True,
                   help="a recipe (YAML or name): for a .ckpt the recipe it belongs to; for a TensorFlow "
                        "file the training/evaluation settings to keep (layers and numerics come from the file)")
    p.add_argument("--out", required=True, help="the .safetensors file to write (its recipe: the same name .yaml)")
    p.add_argument("--labels", metavar="PBTXT", help="TensorFlow label map (item { id: 1 display_name: ... }) "
                                                     "for the class names")


def _torchvision_source(path):
    """A torchvision SSD state dict (.pth/.pt), or None for any other file."""
    from ..convert.torchvision import read_torchvision

    return read_torchvision(path)
