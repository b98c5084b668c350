"""`ssdzoo benchmark`: training, inference and box-op speed next to torchvision's ssdlite320."""

from __future__ import annotations

import argparse

HELP = "training, inference (PyTorch, onnxruntime float32 and int8), box-op and predict speed"


def run(args: argparse.Namespace) -> int:
    from ..bench.runner import BenchSettings, format_table, run_benchmark, write_results

    settings = BenchSettings(
        configs=tuple(args.configs), overrides=tuple(args.set), device=args.device, batch=args.batch,
        throughput_batch=args.throughput_batch, data=args.data, workers=args.workers, threads=args.threads,
        channels_last=args.channels_last, regime=args.regime, rounds=args.repeats, quick=args.quick,
        onnx=args.onnx, int8=args.int8, torchvision=args.torchvision, box_ops=args.box_ops,
        predict_images=args.predict_images, predict_workers=args.predict_workers)
    results = run_benchmark(settings)
    print(format_table(results))
    write_results(args.json, results)
    print(f"wrote {args.json}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..bench.inference_speed import REGIMES

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
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 onnxruntime variant")
    p.add_argument("--predict-images", metavar="DIR",
                   help="a folder of images: also time `ssdzoo predict` over it against a plain one-process loop")
    p.add_argument("--predict-workers", type=int, help="predict's loader workers (default: predict's)")
    p.add_argument("--no-torchvision", dest="torchvision", action="store_false",
                   help="skip torchvision's ssdlite320_mobilenet_v3_large")
    p.add_argument("--no-box-ops", dest="box_ops", action="store_false",
                   help="skip target encoding and post-processing against the seed's algorithms")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every config (repeatable)")
    p.add_argument("--json", default="runs/benchmark.json", help="where to write the record (default: %(default)s)")
