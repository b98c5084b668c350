"""`ssdzoo benchmark`: training, inference and box-op figures of configs on one device, in one
process, next to torchvision's ssdlite320_mobilenet_v3_large; a table and a JSON record.

    training    images/s of full steps (``train_speed``): synthetic batches, and the real
                loader with ``data``
    inference   batch-1 latency and batch-32 images/s end to end (``inference_speed``)
    box ops     target encoding and post-processing per image against the seed's numpy
                algorithms, results checked identical (``box_ops``)
    predict     with ``predict_images``: ``ssdzoo predict`` images/s over a folder against a
                plain one-process loop (``predict_speed``)
    comparisons the ratios with their goals: each config against torchvision's model, int8
                against float32 onnxruntime, predict against the plain loop; a verdict only
                where both sides were timed often enough (``MIN_CALLS``)
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from ..atomic import write_json
from ..config import Config, load_config
from ..inference import resolve_device
from .box_ops import POSTPROCESS_CASES, bench_encode, bench_postprocess
from .inference_speed import FLOAT_LABEL, GRAPH_PART, INT8_LABEL, TORCHVISION_NAME, bench_inference, regime_model
from .timing import torch_threads
from .train_speed import bench_loader_training, bench_training

log = logging.getLogger(__name__)

LOADED = 1.5  # load average over which the figures are marked as from a loaded machine
MIN_CALLS = 10  # timed calls (training steps, inference calls) a ratio needs for a verdict
MIN_PREDICT_IMAGES = 200  # images x rounds per predict variant for a verdict
TOO_FEW = "too few steps to judge"


@dataclass(frozen=True)
class Repeats:
    """How much each measurement repeats (rounds are interleaved across variants)."""

    train_warmup: int
    train_rounds: int
    train_steps_per_round: int
    loader_warmup: int
    loader_steps: int
    infer_warmup: int
    infer_rounds: int
    infer_calls_per_round: int
    throughput_rounds: int
    encode_repeats: int
    postprocess_repeats: int


FULL = Repeats(train_warmup=3, train_rounds=5, train_steps_per_round=2, loader_warmup=3, loader_steps=20,
               infer_warmup=3, infer_rounds=5, infer_calls_per_round=10, throughput_rounds=5,
               encode_repeats=11, postprocess_repeats=5)
QUICK = Repeats(train_warmup=1, train_rounds=2, train_steps_per_round=1, loader_warmup=1, loader_steps=2,
                infer_warmup=1, infer_rounds=2, infer_calls_per_round=2, throughput_rounds=1,
                encode_repeats=2, postprocess_repeats=1)


@dataclass(frozen=True)
class BenchSettings:
    configs: tuple[str, ...] = ("ssd_mobilenetv3",)
    overrides: tuple[str, ...] = ()  # key=value, applied to every config
    device: str = "cpu"
    batch: Optional[int] = None  # training batch; None: 8 on the CPU, 32 on a GPU
    throughput_batch: int = 32
    data: Optional[str] = None  # a packed dataset or COCO root: also train through the loader
    workers: Optional[int] = None  # loader workers; None: the config's, at most the CPU count
    threads: Optional[int] = None  # torch (and onnxruntime) intra-op threads; None: defaults
    channels_last: bool = True
    regime: str = "busy"  # inference score regime (inference_speed.REGIMES)
    rounds: Optional[int] = None  # interleaved rounds of training and inference timing
    quick: bool = False
    onnx: bool = True
    int8: bool = True  # the int8 onnxruntime variant (CPU)
    torchvision: bool = True
    box_ops: bool = True
    predict_images: Optional[str] = None  # a folder: also time `ssdzoo predict` over it
    predict_workers: Optional[int] = None  # its loader workers; None: predict's default


def run_benchmark(settings: BenchSettings) -> dict:
    """Every measurement of ``settings``, as one JSON-able record."""
    device = resolve_device(settings.device)
    cfgs = {name: load_config(name, settings.overrides) for name in settings.configs}
    batch = settings.batch or (32 if device.type == "cuda" else 8)
    repeats = QUICK if settings.quick else FULL
    if settings.rounds is not None:
        repeats = dataclasses.replace(repeats, train_rounds=settings.rounds, infer_rounds=settings.rounds,
                                      throughput_rounds=settings.rounds)
    load_before = _load_average()
    with torch_threads(settings.threads) as threads, _cudnn_autotune(device):
        results = {"settings": {**dataclasses.asdict(settings), "train_batch": batch, "repeats":
                                dataclasses.asdict(repeats), "cudnn_benchmark": device.type == "cuda"},
                   "machine": machine(device, threads)}
        results["training"] = bench_training(
            cfgs, device, batch_size=batch, channels_last=settings.channels_last,
            torchvision=settings.torchvision, rounds=repeats.train_rounds,
            steps_per_round=repeats.train_steps_per_round, warmup=repeats.train_warmup)
        if settings.data:
            results["training"]["loader"] = {
                name: bench_loader_training(cfg, settings.data, device, batch_size=batch,
                                            channels_last=settings.channels_last,
                                            workers=_workers(cfg, settings.workers),
                                            steps=repeats.loader_steps, warmup=repeats.loader_warmup)
                for name, cfg in cfgs.items()}
        results["inference"] = bench_inference(
            cfgs, device, regime=settings.regime, channels_last=settings.channels_last, onnx=settings.onnx,
            int8=settings.int8, torchvision=settings.torchvision, threads=settings.threads,
            throughput_batch=settings.throughput_batch, rounds=repeats.infer_rounds,
            calls_per_round=repeats.infer_calls_per_round, warmup=repeats.infer_warmup,
            throughput_rounds=repeats.throughput_rounds)
        if settings.box_ops:
            results["box_ops"] = {name: _box_ops(name, cfg, repeats, threads, quick=settings.quick)
                                  for name, cfg in cfgs.items()}
        if settings.predict_images:
            from ..inference import Predictor
            from .predict_speed import bench_predict

            results["predict"] = {
                name: bench_predict(Predictor(cfg, regime_model(cfg, settings.regime), device=str(device),
                                              channels_last=settings.channels_last),
                                    settings.predict_images, workers=settings.predict_workers,
                                    rounds=1 if settings.quick else 2)
                for name, cfg in cfgs.items()}
    results["machine"]["load_average"] = {"before": load_before, "after": _load_average()}
    results["machine"]["loaded"] = max(load_before[0], _load_average()[0]) > LOADED
    results["comparisons"] = comparisons(results)
    return results


def _box_ops(name: str, cfg: Config, repeats: Repeats, threads: int, *, quick: bool) -> dict:
    """Encode (64 images x 7 boxes) and post-processing per case, at this run's thread count.
    The default boxes are the named config's (overrides don't reach them)."""
    log.info("box ops of %s against the seed's numpy algorithms", name)
    wanted = ("sparse",) if quick else tuple(case[0] for case in POSTPROCESS_CASES)
    # a case whose clustered objects need more anchors than the config has is left out
    cases = tuple(case for case in POSTPROCESS_CASES
                  if case[0] in wanted and case[2] * case[3] <= cfg.num_ssd_boxes)
    return {"encode": bench_encode(recipe=name, repeats=repeats.encode_repeats, thread_counts=(threads,)),
            "postprocess": bench_postprocess(recipe=name, cases=cases, repeats=repeats.postprocess_repeats,
                                             thread_counts=(threads,))}


def comparisons(results: dict) -> list[dict]:
    """Ratios with their goals, where both sides were measured: each config against
    torchvision's ssdlite320 (latency, training), int8 against float32 onnxruntime (the graph
    alone, batch 1), ``ssdzoo predict`` against the plain loop (images/s)."""
    rows = []
    latency = results["inference"]["latency_batch1"]
    parts = results["inference"]["parts_batch1"]
    training = results["training"]["variants"]
    for name in results["settings"]["configs"]:
        if TORCHVISION_NAME in latency:
            reference = latency[TORCHVISION_NAME]
            rows.append(_ratio(f"{name} PyTorch batch-1 latency / torchvision's", latency[f"{name} PyTorch"],
                               reference, at_most=1.0))
            onnx = [v for k, v in latency.items() if k.startswith(f"{name} onnxruntime") and INT8_LABEL not in k]
            if onnx:
                fastest = min(onnx, key=lambda v: v["median_ms"])
                rows.append(_ratio(f"{name} onnxruntime (faster float graph) batch-1 latency / torchvision's",
                                   fastest, reference, at_most=0.5))
            rows.append(_ratio(f"{name} training img/s / torchvision's (batch {results['training']['batch']})",
                               training[TORCHVISION_NAME]["step"], training[name]["step"], at_least=1.0))
        int8, float32 = parts.get(f"{name} {INT8_LABEL}{GRAPH_PART}"), parts.get(f"{name} {FLOAT_LABEL}{GRAPH_PART}")
        if int8 and float32:
            rows.append(_ratio(f"{name} int8 / float32 onnxruntime batch-1 latency (graph alone)", int8, float32,
                               at_most=0.6))
        predict = results.get("predict", {}).get(name)
        if predict:
            enough = predict["images"] * predict["rounds"] >= MIN_PREDICT_IMAGES and predict["rounds"] >= 2
            for key, label in (("speedup_drawing", "drawing"), ("speedup_no_draw", "--no-draw")):
                rows.append(_verdict(f"{name} predict img/s / the plain loop's, {label}", predict[key],
                                     at_least=1.5, enough=enough))
    return rows


def _ratio(what: str, timing: dict, reference: dict, **goal) -> dict:
    """``timing`` / ``reference`` (median ms; for img/s goals pass the reference first)."""
    enough = min(timing["calls"], reference["calls"]) >= MIN_CALLS
    return _verdict(what, timing["median_ms"] / reference["median_ms"], enough=enough, **goal)


def _verdict(what: str, ratio: float, *, enough: bool, at_most: Optional[float] = None,
             at_least: Optional[float] = None) -> dict:
    goal, met = (f"<= {at_most}", ratio <= at_most) if at_most is not None else (f">= {at_least}", ratio >= at_least)
    verdict = ("met" if met else "not met") if enough else TOO_FEW
    return {"what": what, "ratio": round(ratio, 3), "goal": goal, "met": bool(met) if enough else None,
            "verdict": verdict}


def machine(device: torch.device, threads: int) -> dict:
    """What the figures were measured on."""
    info = {"cpu": _cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": threads,
            "device": str(device), "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__}
    for package in ("torchvision", "timm", "onnxruntime"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info[package] = importlib.metadata.version(package)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else [0.0, 0.0, 0.0]


def _workers(cfg: Config, workers: Optional[int]) -> int:
    return workers if workers is not None else min(cfg.num_parallel_workers, os.cpu_count() or 1)


@contextlib.contextmanager
def _cudnn_autotune(device: torch.device) -> Iterator[None]:
    """cuDNN picks the fastest kernels for the fixed shapes on a GPU; restored after."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def write_results(path: str | Path, results: dict) -> Path:
    """The record as JSON at ``path`` (folders made), written atomically."""
    return write_json(path, results)


def format_table(results: dict) -> str:
    """The record as a readable table: training, inference, box ops, predict, comparisons."""
    m, s = results["machine"], results["settings"]
    load = m["load_average"]["before"][0], m["load_average"]["after"][0]
    lines = [f"ssdzoo benchmark on {m['device']} ({m.get('gpu', m['cpu'])}, {m['cpu_count']} cores), "
             f"{m['torch_threads']} torch threads, torch {m['torch']}"
             + (f", onnxruntime {m['onnxruntime']}" if "onnxruntime" in m else "")
             + f"; load average {load[0]} -> {load[1]}" + (" (LOADED MACHINE)" if m["loaded"] else "")
             + f"; channels_last {s['channels_last']}; medians"]
    training = results["training"]
    lines += ["", f"{'training, batch ' + str(training['batch']) + ', full step':<58}{'img/s':>9}{'ms/step':>10}"
                  f"{'input':>10}  precision"]
    for name, v in training["variants"].items():
        lines.append(f"  {name + ' (synthetic)':<56}{v['img_per_s']:>9.2f}{v['step']['median_ms']:>10.1f}"
                     f"{'x'.join(map(str, v['input_hw'])):>10}  {v['precision']}")
    for name, v in training.get("loader", {}).items():
        label = f"{name} (loader, {v['workers']} workers, {v['num_classes']} classes)"
        lines.append(f"  {label:<56}{v['img_per_s']:>9.2f}"
                     f"{1e3 * v['seconds'] / v['steps']:>10.1f}{'':>10}  waited for data "
                     f"{100 * v['data_wait_share']:.0f}% of the time")
    inference = results["inference"]
    throughput = inference["throughput"]
    h, w = inference["image_hw"]
    title = f"inference, one {w}x{h} picture end to end ({inference['regime']} scores)"
    rate_title = f"batch-{throughput['batch']} img/s"
    lines += ["", f"{title:<58}{'batch-1 ms':>11}{'(min)':>8}{rate_title:>16}{'detections':>12}"]
    for name, v in inference["latency_batch1"].items():
        rate = throughput["variants"][name]["img_per_s"]
        lines.append(f"  {name:<56}{v['median_ms']:>11.1f}{v['min_ms']:>8.1f}{rate:>16.1f}{v['detections']:>12}")
    for name, v in inference["parts_batch1"].items():
        lines.append(f"    {name:<54}{v['median_ms']:>11.2f}{v['min_ms']:>8.2f}")
    for name, reason in inference["skipped"].items():
        lines.append(f"  {name}: skipped ({reason})")
    for name, block in results.get("box_ops", {}).items():
        title = f"box ops of {name}, ms per image"
        lines += ["", f"{title:<58}{'seed':>11}{'ssdzoo':>10}{'speedup':>9}  identical"]
        encode, post = block["encode"], block["postprocess"]
        rows = [(f"encode {encode['batch']} images x {encode['boxes_per_image']} boxes, "
                 f"{encode['anchors']} anchors", encode["timings"], encode["labels_identical"])]
        rows += [(f"postprocess {case}: {v['candidates_per_image']:.0f} candidates, "
                  f"{post['anchors']} x {post['classes']}", v["timings"], v["identical"])
                 for case, v in post["cases"].items()]
        for label, timings, same in rows:
            t = next(iter(timings.values()))
            lines.append(f"  {label:<56}{t['seed_ms_per_image']:>11.3f}{t['ssdzoo_ms_per_image']:>10.3f}"
                         f"{t['speedup']:>8.1f}x  {same}")
    for name, p in results.get("predict", {}).items():
        title = f"predict over {p['folder']} ({p['images']} images, batch {p['batch']}), end to end"
        lines += ["", f"{title:<58}{'img/s':>11}"]
        lines += [f"  {variant:<56}{v['img_per_s']:>11.1f}" for variant, v in p["variants"].items()]
    if results["comparisons"]:
        lines += ["", f"{'comparisons':<80}{'ratio':>6}  goal"]
        lines += [f"  {c['what']:<78} {c['ratio']:>6.2f}  {c['goal']:<7} {c['verdict']}"
                  for c in results["comparisons"]]
    return "\n".join(lines)
