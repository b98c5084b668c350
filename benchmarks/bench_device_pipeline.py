"""The device data backend's pieces, timed on one device (never run by the test suite).

    python benchmarks/bench_device_pipeline.py [--device cuda] [--batch 256] [--size 300]
                                               [--hw 480 640] [--rounds 5] [--out DIR]

On ``--batch`` JPEGs of ``--hw`` (photo-like: smooth shapes and grain, quality 90), with the
seed's drawn augmentations, it times (median of ``--rounds``, the device synchronized):

    decode          decoder.decode_on_device of the batch (batched nvJPEG on CUDA)
    roi_align       crop_and_resize: one roi_align over the centred batch (antialias mode)
    interpolate     the alternative: per image, slice the crop and F.interpolate(antialias=True)
    augment         augment_on_device: canvas, crop and resize, flip, colour, normalize
    end_to_end      decode_images + augment_on_device (what batch_to_device adds to a step)
    cpu_executor    transforms.apply_augmentation per image on this process's CPU threads

and the pixel difference between roi_align and interpolate (mean abs, normalized units). It
prints one JSON object (also written to OUT/bench_device_pipeline.json).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ssdzoo.data.device_pipeline import (EncodedImages, augment_on_device, centred_canvas,  # noqa: E402
                                         crop_and_resize, decode_images, encode_image)
from ssdzoo.data.transforms import apply_augmentation, draw_augmentation  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def photo_jpeg(seed: int, w: int, h: int) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    pixels = np.clip(smooth + rng.normal(0, 9, smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def timed(fn, device: torch.device, rounds: int) -> tuple[float, object]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    result = fn()  # warm-up
    sync()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=300, help="output side (image_size)")
    parser.add_argument("--hw", type=int, nargs=2, default=(480, 640), help="input height and width")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="runs/bench_device_pipeline")
    args = parser.parse_args()
    device, size_hw, (h, w) = torch.device(args.device), (args.size, args.size), args.hw

    distinct = [photo_jpeg(k, w, h) for k in range(min(args.batch, 32))]
    datas = [distinct[k % len(distinct)] for k in range(args.batch)]
    boxes = np.array([[0.1 * w, 0.2 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.5 * h, 0.9 * w, 0.8 * h]], np.float32)
    augmentations = [draw_augmentation(boxes, np.array([1, 2]), image_hw=(h, w), size_hw=size_hw,
                                       rng=np.random.default_rng(k)).augmentation for k in range(args.batch)]
    encoded = EncodedImages.stack([encode_image(d) for d in datas], augmentations)
    if device.type == "cuda":
        encoded = EncodedImages(*(t.pin_memory() for t in encoded))
    mean_255 = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255

    seconds, (decoded, _) = {}, (None, None)
    seconds["decode"], (decoded, _) = timed(lambda: decode_images(encoded, device), device, args.rounds)
    canvas = centred_canvas(decoded, mean_255)
    crops = encoded.crops.to(device)
    seconds["roi_align"], by_roi = timed(lambda: crop_and_resize(canvas, crops, size_hw, "antialias"),
                                         device, args.rounds)

    def per_image():
        out = torch.empty(len(decoded), 3, *size_hw, device=device)
        for k, (x0, y0, x1, y1) in enumerate(encoded.crops.int().tolist()):
            out[k] = F.interpolate(canvas[k:k + 1, :, y0:y1, x0:x1], size=size_hw, mode="bilinear",
                                   antialias=True, align_corners=False)[0]
        return out

    seconds["interpolate"], by_interpolate = timed(per_image, device, args.rounds)
    del canvas
    seconds["augment"], _ = timed(lambda: augment_on_device(decoded, encoded, size_hw=size_hw, mean=MEAN, std=STD),
                                  device, args.rounds)
    seconds["end_to_end"], _ = timed(
        lambda: augment_on_device(decode_images(encoded, device)[0], encoded, size_hw=size_hw, mean=MEAN, std=STD),
        device, args.rounds)
    cpu_count = min(args.batch, 32)
    cpu_seconds, _ = timed(lambda: [apply_augmentation(d, a, size_hw=size_hw, mean=MEAN, std=STD)
                                    for d, a in zip(datas[:cpu_count], augmentations[:cpu_count])],
                           torch.device("cpu"), max(1, args.rounds // 2))
    std_255 = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255
    difference = ((by_roi - by_interpolate).abs() / std_255).mean().item()
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "batch": args.batch, "input_hw": [h, w], "output_hw": list(size_hw),
        "img_per_s": {name: round(args.batch / s, 1) for name, s in seconds.items()},
        "ms_per_batch": {name: round(s * 1e3, 2) for name, s in seconds.items()},
        "cpu_executor_img_per_s_one_process": round(cpu_count / cpu_seconds, 1),
        "roi_align_vs_interpolate_mean_abs_normalized": round(difference, 5),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_device_pipeline.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
