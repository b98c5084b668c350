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

    summary = train(load_config(args.config, args.overrides), resume=args.resume, epochs=args.epochs)
    if summary["best"]:
        print(f"best checkpoint: {summary['best']} (AP {summary['best_ap']:.4f})")
    print(f"last checkpoint: {summary['last']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .config import load_config
    from .data import load_dataset
    from .engine.distributed import DistInfo, resolve_device
    from .engine.evaluate import evaluate, format_table, write_metrics_json
    from .model import build_model

    cfg = load_config(args.config, args.overrides)
    device = resolve_device(cfg.device, DistInfo())
    model = build_model(cfg, weights=args.checkpoint).to(device)
    stats = evaluate(model, load_dataset(cfg.data_dir, cfg, train=False), cfg, device=device,
                     progress=sys.stderr.isatty())
    print(format_table(stats))
    if args.json:
        write_metrics_json(stats, args.json, config=args.config, checkpoint=str(args.checkpoint))
    return 0


def _train_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--resume", metavar="CKPT", help="continue a run from its last.pt")
    p.add_argument("--epochs", type=int, metavar="N", help="stop after N epochs of this run (resume later)")


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


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data.packed import verify_packed
    from .data.prepare import prepare_coco

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


def _prepare_args(p: argparse.ArgumentParser) -> None:
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


def cmd_synth(args: argparse.Namespace) -> int:
    from .data.synthetic import make_synthetic_coco

    summary = make_synthetic_coco(args.out, seed=args.seed, num_train=args.train, num_val=args.val,
                                  workers=args.workers)
    for split, s in summary.items():
        print(f"{split}: {s['images']} images, {s['boxes']} boxes ({s['small_boxes']} small) "
              f"-> {args.out}/{split}")
    return 0


def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder (COCO layout)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=3000, help="training images")
    p.add_argument("--val", type=int, default=300, help="validation images")
    p.add_argument("--workers", type=int, default=1, help="processes")


def cmd_predict(args: argparse.Namespace) -> int:
    from .config import load_config
    from .inference import Predictor
    from .predict import read_category_ids, run_predict

    cfg = load_config(args.config, args.set)
    weights = args.checkpoint or cfg.ckpt_path
    if not weights:
        raise ValueError("no weights: pass --checkpoint (or set ckpt_path in the config)")
    predictor = Predictor.from_weights(cfg, weights, device=args.device, min_score=args.score)
    category_ids = read_category_ids(args.category_ids, cfg) if args.category_ids else None
    summary = run_predict(predictor, args.images, args.out, category_ids=category_ids, batch_size=args.batch)
    print(f"{len(summary.written)} images with {summary.num_detections} detections "
          f"(score > {predictor.min_score}) written to {args.out}/")
    if summary.skipped:
        print(f"skipped {len(summary.skipped)} unreadable file(s): {', '.join(map(str, summary.skipped))}")
    print(f"detections (COCO results format): {summary.json_path}")
    return 0


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML recipe, or a name in configs/ (ssd_mobilenetv2, demo, ...)")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders of images")
    p.add_argument("--checkpoint", help="ssdzoo checkpoint (.pt, .safetensors), MindSpore .ckpt or "
                                        "an .onnx file from `ssdzoo export` (default: ckpt_path)")
    p.add_argument("--out", required=True, help="folder for the drawn images and detections.json")
    p.add_argument("--score", type=float, default=None,
                   help="keep detections scoring above this (default: the config's min_score)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass (default: 8)")
    p.add_argument("--category-ids", help="JSON: a list of category ids for labels 1.., or a COCO "
                                          "annotation file to map class names to its ids")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")


def cmd_export(args: argparse.Namespace) -> int:
    from .config import load_config
    from .export import check_onnx, export_onnx, onnx_opset
    from .inference import load_image
    from .model import build_model
    from .predict import collect_images

    cfg = load_config(args.config, args.overrides)
    weights = args.checkpoint or cfg.ckpt_path
    if not weights:
        raise ValueError("no weights: pass --checkpoint (or set ckpt_path in the config)")
    if not str(args.out).endswith(".onnx"):
        raise ValueError(f"--out {args.out}: expected a file name ending in .onnx")
    model = build_model(cfg, weights=weights).eval()
    path = export_onnx(model, cfg, args.out, nms=args.nms, opset=args.opset)
    height, width = cfg.image_size
    layout = ("images (batch, 3, {h}, {w}), image_hw (batch, 2) -> batch_index, boxes (xyxy pixels), "
              "scores, labels (detections)" if args.nms else
              "images (batch, 3, {h}, {w}) -> boxes (batch, {a}, 4) xyxy normalized, probs (batch, {a}, {c})")
    print(f"wrote {path} (opset {onnx_opset(path)}, {path.stat().st_size / 1e6:.1f} MB): "
          + layout.format(h=height, w=width, a=cfg.num_ssd_boxes, c=cfg.num_classes))

    images = [load_image(f) for f in collect_images(args.check_images)] if args.check_images else None
    check = check_onnx(path, model, cfg, images)
    what = "your images" if images else "synthetic images"
    print(f"onnxruntime vs PyTorch on {what}, batch sizes {' and '.join(map(str, check.batch_sizes))}:")
    if check.max_box_diff is not None:
        print(f"  largest |difference|: boxes {check.max_box_diff:.3g} (normalized), "
              f"probs {check.max_prob_diff:.3g}")
    print(f"  detections: PyTorch {check.num_torch}, onnxruntime {check.num_onnx}, agreeing "
          f"{check.num_agree} (largest |difference|: boxes {check.max_det_box_diff:.3g} px, "
          f"scores {check.max_det_score_diff:.3g})")
    if not check.agrees():
        print("ssdzoo export: error: onnxruntime does not agree with PyTorch", file=sys.stderr)
        return 1
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--checkpoint", help="ssdzoo checkpoint (.pt, .safetensors) or MindSpore .ckpt "
                                        "(default: the config's ckpt_path)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--nms", action="store_true",
                   help="put the seed's NMS in the graph: inputs images, image_hw; outputs "
                        "batch_index, boxes (pixels), scores, labels")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--check-images", nargs="+", metavar="IMAGE",
                   help="images (or folders) to check with, instead of synthetic ones")


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, seed=args.seed, overrides=args.overrides)
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of configs/demo.yaml")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .bench.runner import BenchSettings, format_table, run_benchmark, write_results

    settings = BenchSettings(
        configs=tuple(args.configs), overrides=tuple(args.set), device=args.device, batch=args.batch,
        throughput_batch=args.throughput_batch, data=args.data, workers=args.workers, threads=args.threads,
        channels_last=args.channels_last, regime=args.regime, rounds=args.repeats, quick=args.quick,
        onnx=args.onnx, torchvision=args.torchvision, box_ops=args.box_ops)
    results = run_benchmark(settings)
    print(format_table(results))
    write_results(args.json, results)
    print(f"wrote {args.json}")
    return 0


def _benchmark_args(p: argparse.ArgumentParser) -> None:
    from .bench.inference_speed import REGIMES

    p.add_argument("configs", nargs="*", default=["ssd_mobilenetv3"], metavar="CONFIG",
                   help="YAML recipes or names in configs/ (default: ssd_mobilenetv3)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--batch", type=int, help="training batch (default: 8 on the CPU, 32 on a GPU)")
    p.add_argument("--throughput-batch", type=int, default=32, help="inference throughput batch (default: 32)")
    p.add_argument("--data", help="a packed dataset or COCO root: also time training through the real loader")
    p.add_argument("--workers", type=int, help="loader workers (default: the config's, at most the CPU count)")
    p.add_argument("--threads", type=int, help="torch and onnxruntime intra-op threads (default: theirs)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="NHWC layout for every model, torchvision's too (default: on)")
    p.add_argument("--regime", choices=REGIMES, default="busy",
                   help="inference scores of the random ssdzoo head: sparse (no detections), busy "
                        "(every default box a candidate of one class; default), seed-init (every score ~0.5)")
    p.add_argument("--repeats", type=int, help="interleaved timing rounds (default: 5; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="few warm-up and timed calls: a smoke run")
    p.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip the onnxruntime variants")
    p.add_argument("--no-torchvision", dest="torchvision", action="store_false",
                   help="skip torchvision's ssdlite320_mobilenet_v3_large")
    p.add_argument("--no-box-ops", dest="box_ops", action="store_false",
                   help="skip target encoding and post-processing against the seed's algorithms")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every config (repeatable)")
    p.add_argument("--json", default="runs/benchmark.json", help="where to write the record (default: %(default)s)")


COMMANDS = {
    "info": (cmd_info, "parameters, FLOPs, default boxes and feature maps of a config",
             lambda p: (_config_args(p), p.add_argument("--json", action="store_true",
                                                        help="print one JSON object"))),
    "train": (cmd_train, "train a config (torchrun --nproc_per_node N -m ssdzoo train ... for DDP)", _train_args),
    "eval": (cmd_eval, "COCO mAP of a checkpoint on the config's val split", _eval_args),
    "convert": (cmd_convert, "a MindSpore .ckpt (seed SSD or MindCV backbone) as safetensors, "
                             "without MindSpore", _convert_args),
    "prepare": (cmd_prepare, "pack a COCO folder into sharded, checksummed Arrow files", _prepare_args),
    "synth": (cmd_synth, "write the synthetic shapes dataset (COCO layout, JPEG files)", _synth_args),
    "predict": (cmd_predict, "draw detections on images and write them as COCO results JSON",
                _predict_args),
    "demo": (cmd_demo, "synthesize a dataset, train, evaluate and predict on this machine", _demo_args),
    "export": (cmd_export, "export to ONNX (optionally with NMS), checked against PyTorch with onnxruntime",
               _export_args),
    "benchmark": (cmd_benchmark, "training, inference and box-op speed next to torchvision's ssdlite320",
                  _benchmark_args),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssdzoo", description="SSD object detection on timm backbones")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text, add_args) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's arguments; ``key=value`` overrides may come before or after options."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        return build_parser().parse_args(argv)  # help, or an error listing the commands
    _, help_text, add_args = COMMANDS[argv[0]]
    sub = argparse.ArgumentParser(prog=f"ssdzoo {argv[0]}", description=help_text)
    add_args(sub)
    nested = any(isinstance(action, argparse._SubParsersAction) for action in sub._actions)
    parse = sub.parse_args if nested else sub.parse_intermixed_args  # intermixed can't take subcommands
    return argparse.Namespace(command=argv[0], **vars(parse(argv[1:])))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return COMMANDS[args.command][0](args) or 0
    except (ValueError, FileNotFoundError) as err:  # ConfigError is a ValueError
        print(f"ssdzoo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
