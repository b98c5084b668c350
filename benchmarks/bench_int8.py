"""Which layers stay float in `ssdzoo export --int8`: batch-1 latency and AP per choice.

    PYTHONPATH=src python benchmarks/bench_int8.py speed [--configs ssd_mobilenetv2 ssd_mobilenetv3] [--threads 2]
    PYTHONPATH=src python benchmarks/bench_int8.py accuracy --config demo --checkpoint runs/demo/best.pt \\
        --data runs/demo/packed [--calibration-images 200]

speed: random weights (the benchmark's "busy" head: every default box a candidate of one class),
the float32 plain graph and its int8 versions for each ``FLOAT_PARTS`` choice, calibrated on 12
synthetic pictures; onnxruntime sessions with the same intra-op threads, timed interleaved in
one process: the graph alone (session.run) and end to end (Predictor: preprocess, graph, NMS)
on one 640x480 picture. accuracy: COCO AP of the float32 graph and of each int8 version of the
checkpoint on the dataset's val split (``ssdzoo eval``'s path), calibrated on that split.
Prints a table and writes JSON under runs/bench_int8/.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

import ssdzoo
from ssdzoo.atomic import write_json
from ssdzoo.bench.inference_speed import regime_model
from ssdzoo.bench.timing import interleaved
from ssdzoo.export import export_onnx, synthetic_images
from ssdzoo.inference import Predictor, preprocess
from ssdzoo.quantize import FLOAT_PARTS, Calibration, calibration_images, quantize_onnx


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def speed(args) -> dict:
    results = {}
    pictures = [image for seed in range(4) for image in synthetic_images(seed=seed)]
    picture = synthetic_images(sizes_hw=((480, 640),))[0]
    for name in args.configs:
        cfg = ssdzoo.load_config(name)
        model = regime_model(cfg, "busy")
        batch, image_hw = preprocess(pictures, cfg)
        with tempfile.TemporaryDirectory() as tmp:
            paths = {"float32": export_onnx(model, cfg, Path(tmp) / "float32.onnx")}
            for part in FLOAT_PARTS:
                paths[f"int8, float: {part}"] = quantize_onnx(paths["float32"], Path(tmp) / f"{part}.onnx",
                                                             Calibration(batch, image_hw, "synthetic"), float_part=part)
            predictors = {}
            for label, path in paths.items():
                predictor = Predictor(cfg, onnx_path=path)
                predictor.network.session = session(path, args.threads)
                predictors[label] = predictor
            one, _ = preprocess([picture], cfg)
            feed = np.ascontiguousarray(one.numpy())
            calls = {}
            for label, predictor in predictors.items():
                calls[f"{label}: graph"] = lambda p=predictor: p.network.session.run(None, {"images": feed})
                calls[f"{label}: end to end"] = lambda p=predictor: p.predict([picture])
            timings = interleaved(calls, rounds=args.rounds, calls_per_round=args.calls, warmup=3)
        float_graph = timings["float32: graph"].median_ms
        float_end = timings["float32: end to end"].median_ms
        results[name] = {label: {**t.to_dict(), "ratio_to_float32": round(
            t.median_ms / (float_graph if label.endswith("graph") else float_end), 3)} for label, t in timings.items()}
        print(f"{name}: batch-1 ms, median (min) over {args.rounds * args.calls} calls, {args.threads} threads, "
              f"load {os.getloadavg()[0]:.2f}")
        for label, t in results[name].items():
            print(f"  {label:40s} {t['median_ms']:8.2f} ({t['min_ms']:6.2f})   x{t['ratio_to_float32']:.2f}")
    return results


def accuracy(args) -> dict:
    from ssdzoo.data import load_dataset
    from ssdzoo.engine.evaluate import evaluate_predictor

    cfg = ssdzoo.load_config(args.config, [f"data_dir={args.data}"])
    model = ssdzoo.build_model(cfg, weights=args.checkpoint).eval()
    dataset = load_dataset(args.data, cfg, train=False)
    calibration = calibration_images(args.data, cfg, args.calibration_images)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"float32": export_onnx(model, cfg, Path(tmp) / "float32.onnx")}
        for part in FLOAT_PARTS:
            paths[f"int8, float: {part}"] = quantize_onnx(paths["float32"], Path(tmp) / f"{part}.onnx", calibration,
                                                         float_part=part)
        for label, path in paths.items():
            stats = evaluate_predictor(Predictor(cfg, onnx_path=path), dataset, cfg, progress=False).coco.stats
            results[label] = {k: round(v, 4) for k, v in stats.items()}
            print(f"  {label:28s} AP {stats['AP']:.4f}  AP50 {stats['AP50']:.4f}  AP75 {stats['AP75']:.4f}  "
                  f"APs {stats['APs']:.4f}")
    return {"config": args.config, "checkpoint": args.checkpoint, "data": args.data,
            "calibration": calibration.source, "stats": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--configs", nargs="+", default=["ssd_mobilenetv2", "ssd_mobilenetv3"])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--calls", type=int, default=10)
    p = sub.add_parser("accuracy")
    p.add_argument("--config", default="demo")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--calibration-images", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(getattr(args, "threads", None) or torch.get_num_threads())
    result = speed(args) if args.what == "speed" else accuracy(args)
    path = write_json(Path("runs/bench_int8") / f"{args.what}.json", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
