"""`ssdzoo export`: export to ONNX (optionally with NMS), checked against PyTorch with onnxruntime."""

from __future__ import annotations

import argparse
import sys

from .common import load_config_for_weights, optional_config_args, split_config

HELP = "export to ONNX (optionally with NMS), checked against PyTorch with onnxruntime"


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..export import check_onnx, export_onnx, onnx_opset
    from ..inference import load_image
    from ..model import build_model
    from ..predict import collect_images

    config, overrides = split_config(args)
    weights = args.checkpoint or (load_config(config, overrides).ckpt_path if config else None)
    if not weights:
        raise ValueError("no weights: pass --checkpoint (or set ckpt_path in the config)")
    cfg = load_config_for_weights(config, overrides, weights)
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    optional_config_args(p)
    p.add_argument("--checkpoint", help="ssdzoo checkpoint (.pt, .safetensors), MindSpore .ckpt or "
                                        "TensorFlow OD API graph (.pb) / checkpoint (default: the config's ckpt_path)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--nms", action="store_true",
                   help="put the seed's NMS in the graph: inputs images, image_hw; outputs "
                        "batch_index, boxes (pixels), scores, labels")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--check-images", nargs="+", metavar="IMAGE",
                   help="images (or folders) to check with, instead of synthetic ones")
