"""`ssdzoo export`: export to ONNX (optionally with NMS, optionally int8), checked with onnxruntime."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .common import load_config_for_weights, optional_config_args, split_config

HELP = "export to ONNX (optionally with NMS, optionally int8), checked with onnxruntime"


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..export import export_onnx
    from ..model import build_model

    config, overrides = split_config(args)
    weights = args.checkpoint or (load_config(config, overrides).ckpt_path if config else None)
    if not weights:
        raise ValueError("no weights: pass --checkpoint (or set ckpt_path in the config)")
    cfg = load_config_for_weights(config, overrides, weights)
    if not str(args.out).endswith(".onnx"):
        raise ValueError(f"--out {args.out}: expected a file name ending in .onnx")
    if args.int8 != (args.calibration is not None):
        raise ValueError("--int8 needs --calibration DATA (a packed dataset, COCO root or image folder), "
                         "and --calibration goes with --int8")
    model = build_model(cfg, weights=weights).eval()
    if not args.int8:
        path = export_onnx(model, cfg, args.out, nms=args.nms, opset=args.opset)
        _print_written(path, cfg, args.nms)
        return _check_float(path, model, cfg, args.check_images)

    from ..quantize import calibration_images, check_int8, quantize_onnx

    calibration = calibration_images(args.calibration, cfg, args.calibration_images)  # errors before the export
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ssdzoo-export-", dir=out.parent) as tmp:
        float_path = export_onnx(model, cfg, Path(tmp) / "float32.onnx", nms=args.nms, opset=args.opset)
        path = quantize_onnx(float_path, out, calibration)
        _print_written(path, cfg, args.nms, f"int8, calibrated on {calibration.source}")
        check = check_int8(path, float_path, cfg, calibration)
    diff = f"largest |probability difference| {check.max_prob_diff:.3g}; " if check.max_prob_diff is not None else ""
    print(f"int8 vs float32 (onnxruntime) on {check.images} calibration images: {diff}"
          f"{check.found} of the {check.float_detections} float32 detections scoring >= {check.min_score} "
          f"found by int8 (same label, IoU >= {check.iou}); `ssdzoo eval --checkpoint {path}` measures its AP")
    return 0


def _print_written(path: Path, cfg, nms: bool, note: str = "") -> None:
    from ..export import onnx_opset

    height, width = cfg.image_size
    layout = ("images (batch, 3, {h}, {w}), image_hw (batch, 2) -> batch_index, boxes (xyxy pixels), "
              "scores, labels (detections)" if nms else
              "images (batch, 3, {h}, {w}) -> boxes (batch, {a}, 4) xyxy normalized, probs (batch, {a}, {c})")
    print(f"wrote {path} (opset {onnx_opset(path)}, {path.stat().st_size / 1e6:.1f} MB{', ' + note if note else ''}): "
          + layout.format(h=height, w=width, a=cfg.num_ssd_boxes, c=cfg.num_classes))


def _check_float(path: Path, model, cfg, check_images) -> int:
    from ..export import check_onnx
    from ..inference import load_image
    from ..predict import collect_images

    images = [load_image(f) for f in collect_images(check_images)] if check_images else None
    check = check_onnx(path, model, cfg, images)
    what = "your images" if images else "synthetic images"
    print(f"onnxruntime vs PyTorch on {what}, batch sizes {' and '.join(map(str, check.batch_sizes))}:")
    if check.max_box_diff is not None:
        print(f"  largest |difference|: boxes {check.max_box_diff:.3g} (normalized), "
              f"probs {check.max_prob_diff:.3g}")
    print(f"  detections: PyTorch {check.num_torch}, onnxruntime {check.num_onnx}, agreeing "
          f"{check.num_agree} (largest |difference|: boxes {check.max_det_box_diff:.3g} px, "
          f"scores {check.max_det_score_diff:.3g})")
    if check.probe is not None:
        probe = check.probe
        print(f"  detections at min_score {probe.min_score:.3g} (the model's best candidates): PyTorch "
              f"{probe.num_torch}, onnxruntime {probe.num_onnx}, agreeing {probe.num_agree} (largest "
              f"|difference|: boxes {probe.max_box_diff:.3g} px, scores {probe.max_score_diff:.3g})")
    if check.compared_nothing:
        print("ssdzoo export: error: nothing to compare: the model detects nothing on these images at any score "
              "threshold, so the graph's detections are unchecked; give --check-images with objects it detects",
              file=sys.stderr)
        return 1
    if not check.agrees():
        print("ssdzoo export: error: onnxruntime does not agree with PyTorch", file=sys.stderr)
        return 1
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..quantize import DEFAULT_CALIBRATION_IMAGES

    optional_config_args(p)
    p.add_argument("--checkpoint", help="ssdzoo checkpoint (.pt, .safetensors), MindSpore .ckpt or "
                                        "TensorFlow OD API graph (.pb) / checkpoint (default: the config's ckpt_path)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--nms", action="store_true",
                   help="put the seed's NMS in the graph: inputs images, image_hw; outputs "
                        "batch_index, boxes (pixels), scores, labels")
    p.add_argument("--int8", action="store_true",
                   help="statically quantized graph (QDQ, int8 weights per channel, uint8 activations) "
                        "for CPUs; needs --calibration")
    p.add_argument("--calibration", metavar="DATA",
                   help="--int8: images to calibrate on: a packed dataset, a COCO root or a folder of images")
    p.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES, metavar="N",
                   help="--int8: how many calibration images (default: %(default)s)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--check-images", nargs="+", metavar="IMAGE",
                   help="images (or folders) to check the float graph with, instead of synthetic ones")
