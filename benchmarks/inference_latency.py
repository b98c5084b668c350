"""Batch-1 latency of the whole inference path on one 640x480 image, in one process.

    PYTHONPATH=src python benchmarks/inference_latency.py [--config ssd_mobilenetv3] [--rounds 5]

Variants, timed in interleaved rounds (each round runs every variant ``--calls`` times in a
row after a warm-up), medians over all calls:
- ssdzoo Predictor with PyTorch, with onnxruntime on the plain graph (ssdzoo.postprocess after
  it), and with onnxruntime on the graph with NMS;
- torchvision's ssdlite320_mobilenet_v3_large end to end (its own resize, normalize, NMS).
Random weights, so three score regimes for ssdzoo: "sparse" (no score over min_score: the
network and fixed costs), "busy" (one class over min_score at every anchor: 1917 NMS
candidates, like a crowded image) and "seed-init" (the seed's zero-bias head: every score near
0.5, 1917 x 80 candidates, the worst case).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import ssdzoo
from ssdzoo.export import export_onnx, synthetic_images
from ssdzoo.inference import Predictor, preprocess


def set_class_bias(model: ssdzoo.Detector, bias: torch.Tensor) -> None:
    """Put ``bias`` (num_classes,) on every anchor's class logits (SSDHead's last convs)."""
    with torch.no_grad():
        for branch in model.head.cls:
            conv = branch[-1]
            conv.bias.copy_(bias.repeat(conv.bias.numel() // len(bias)))


def timed(fn, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="ssd_mobilenetv3")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--regimes", nargs="+", default=["sparse", "busy", "seed-init"])
    args = parser.parse_args()

    cfg = ssdzoo.load_config(args.config)
    image = synthetic_images(sizes_hw=((480, 640),))[0]
    prior = -4.595  # sigmoid = 0.01
    biases = {"sparse": torch.full((cfg.num_classes,), prior),
              "busy": torch.full((cfg.num_classes,), prior).index_fill(0, torch.tensor([1]), -2.0),
              "seed-init": None}
    variants = {}
    tmp = Path(tempfile.mkdtemp(prefix="ssdzoo-bench-"))
    for regime in args.regimes:
        torch.manual_seed(0)
        model = ssdzoo.build_model(cfg).eval()
        if biases[regime] is not None:
            set_class_bias(model, biases[regime])
        variants[f"ssdzoo torch       {regime}"] = Predictor(cfg, model)
        for nms in (False, True):
            path = export_onnx(model, cfg, tmp / f"{regime}_{nms}.onnx", nms=nms)
            variants[f"ssdzoo onnx{'+nms' if nms else '    '}   {regime}"] = Predictor.from_weights(cfg, path)
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    reference = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()

    def torchvision_predict():
        with torch.inference_mode():
            return reference([torch.tensor(image).permute(2, 0, 1).float().div_(255)])

    calls = {name: (lambda p=p: p.predict([image])) for name, p in variants.items()}
    calls["torchvision ssdlite320 (random init)"] = torchvision_predict
    detections = {name: len(fn()[0].scores) if "ssdzoo" in name else len(fn()[0]["scores"])
                  for name, fn in calls.items()}

    # parts of the PyTorch path, "busy" regime
    parts = {}
    if "busy" in args.regimes:
        predictor = variants["ssdzoo torch       busy"]
        batch, image_hw = preprocess([image], cfg)
        with torch.inference_mode():
            boxes, probs = predictor.network(batch)
            parts = {"  preprocess (resize + normalize)": lambda: preprocess([image], cfg),
                     "  network + decode + sigmoid": lambda: predictor.network(batch),
                     "  postprocess (seed's NMS, busy)":
                         lambda: ssdzoo.postprocess(boxes, probs, cfg, image_hw)}
    results = {name: [] for name in [*calls, *parts]}
    for fn in [*calls.values(), *parts.values()]:
        timed(fn, 3)  # warm-up
    for _ in range(args.rounds):
        for name, fn in calls.items():
            results[name] += timed(fn, args.calls)
        with torch.inference_mode():
            for name, fn in parts.items():
                results[name] += timed(fn, args.calls)
    print(f"{args.config}, batch 1, one 480x640 image, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median (min) ms over {args.rounds * args.calls} calls")
    for name, times in results.items():
        count = f"{detections[name]:5d} detections" if name in detections else ""
        print(f"{name:40s} {statistics.median(times) * 1e3:8.1f} ({min(times) * 1e3:6.1f})  {count}")


if __name__ == "__main__":
    main()
