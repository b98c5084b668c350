"""Batch-1 latency of the whole inference path on one 640x480 picture, per score regime.

    PYTHONPATH=src python benchmarks/inference_latency.py [--config ssd_mobilenetv3] [--rounds 5]

The measuring is ``ssdzoo.bench.inference_speed`` (what `ssdzoo benchmark` runs for one
regime): ssdzoo's Predictor with PyTorch, with onnxruntime on the plain graph and on the --nms
graph, and torchvision's ssdlite320_mobilenet_v3_large, interleaved in one process; here for
several regimes of ssdzoo's random head ("sparse", "busy", "seed-init"), one after the other.
"""

from __future__ import annotations

import argparse

import torch

import ssdzoo
from ssdzoo.bench.inference_speed import REGIMES, bench_inference
from ssdzoo.bench.timing import torch_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="ssd_mobilenetv3")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10, help="consecutive calls of a variant per round")
    parser.add_argument("--regimes", nargs="+", choices=REGIMES, default=["sparse", "busy"])
    parser.add_argument("--threads", type=int, help="torch and onnxruntime threads (default: theirs)")
    args = parser.parse_args()

    cfgs = {args.config: ssdzoo.load_config(args.config)}
    with torch_threads(args.threads) as threads:
        for regime in args.regimes:
            result = bench_inference(cfgs, torch.device("cpu"), regime=regime, threads=args.threads,
                                     rounds=args.rounds, calls_per_round=args.calls, throughput_rounds=1)
            print(f"{args.config}, {regime} scores, batch 1, one 480x640 picture, torch {torch.__version__}, "
                  f"{threads} threads; median (min) ms over {args.rounds * args.calls} calls")
            for name, t in {**result["latency_batch1"], **result["parts_batch1"]}.items():
                count = f"{t['detections']:5d} detections" if "detections" in t else ""
                print(f"  {name:52s} {t['median_ms']:8.1f} ({t['min_ms']:6.1f})  {count}")


if __name__ == "__main__":
    main()
