"""Data benchmarks (timed comparisons, never run by the test suite).

    python benchmarks/bench_data.py throughput [--images 256] [--out DIR]
        Training data pipeline (decode + augment + collate + encode), images/s on one core, on
        the same COCO-sized JPEGs: ssdzoo from the packed dataset, ssdzoo from the raw folder,
        and a re-implementation of the seed's per-image pipeline (full-size decode, numpy IoU
        crop, cv2 resize, per-image numpy target encoding). Ratios come from one process, with
        the pipelines interleaved round by round so that a busy machine slows all alike.

    python benchmarks/bench_data.py scale [--images 20000] [--boxes 150000] [--out DIR]
        `ssdzoo prepare` on a generated COCO folder of small images: images/s and peak memory
        of the process tree; then the memory of a 4-worker loader over the packed data, next to a
        loader whose index is the json's Python objects (the usual COCO dataset).

Both print one JSON object at the end (also written to OUT/bench_data_<mode>.json).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import ssdzoo  # noqa: E402
from ssdzoo.data import SampleKey, collate, load_dataset, make_loader, prepare_coco  # noqa: E402
from ssdzoo.data import transforms  # noqa: E402
from ssdzoo.data.synthetic import SynthSpec, make_synthetic_coco  # noqa: E402

try:
    import cv2
except ImportError:  # the seed's resize is cv2's; PIL stands in when OpenCV is not installed
    cv2 = None


# ------------------------------------------------------------------------------------------
# throughput


def coco_like_folder(root: Path, images: int, seed: int) -> dict:
    """COCO-sized JPEGs (480..640 px a side, ~7 boxes each) with camera-like grain, so that
    files are about as large (and as slow to decode) as COCO's."""
    spec = SynthSpec(min_side=480, max_side=640, max_objects=20, mean_objects=7.0, min_object=16,
                     max_fraction=0.4, jpeg_quality=(90, 92))
    make_synthetic_coco(root, seed=seed, num_train=images, num_val=0, spec=spec, workers=2)
    rng = np.random.default_rng(seed)
    sizes = []
    for path in sorted((root / "train2017").glob("*.jpg")):
        pixels = np.asarray(Image.open(path), np.float32)
        grain = rng.normal(0, 9, size=pixels.shape)
        Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8)).save(path, quality=91)
        sizes.append(path.stat().st_size)
    return {"images": images, "mean_file_kb": round(float(np.mean(sizes)) / 1024, 1)}


class SeedStylePipeline:
    """The seed's per-image training pipeline, re-implemented from its description: full-size
    decode, numpy random IoU crop on the decoded array, cv2 resize and flip, colour jitter,
    numpy normalize + HWC->CHW, per-image numpy matching and encoding, then batching."""

    def __init__(self, dataset, cfg, *, regenerate_anchors: bool):
        self.dataset, self.cfg = dataset, cfg
        # the seed's encode function builds its default boxes again on every call (a Python
        # loop over all 1917); regenerate_anchors=False is a stronger baseline that builds them once
        self.regenerate_anchors = regenerate_anchors
        self.anchors_cxcywh, self.anchors_xyxy = self._default_boxes()
        self.mean = np.array(cfg.mean, np.float32) * 255
        self.std = np.array(cfg.std, np.float32) * 255

    def _default_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """SSD default boxes built box by box in Python, the seed's way: (A, 4) cx, cy, w, h
        and (A, 4) corners."""
        cfg = self.cfg
        levels = len(cfg.feature_size)
        scales = [cfg.min_scale + (cfg.max_scale - cfg.min_scale) * k / (levels - 1) for k in range(levels)]
        scales.append(1.0)
        boxes = []
        for k, size in enumerate(cfg.feature_size):
            cells = cfg.image_size[0] / cfg.steps[k]
            if k == 0 and not cfg.aspect_ratios[0]:
                shapes = [(0.1, 0.1), (scales[0] * 2 ** 0.5, scales[0] / 2 ** 0.5),
                          (scales[0] / 2 ** 0.5, scales[0] * 2 ** 0.5)]
            else:
                shapes = [(scales[k], scales[k])]
                for ratio in cfg.aspect_ratios[k]:
                    shapes += [(scales[k] * ratio ** 0.5, scales[k] / ratio ** 0.5),
                               (scales[k] / ratio ** 0.5, scales[k] * ratio ** 0.5)]
                shapes.append(((scales[k] * scales[k + 1]) ** 0.5,) * 2)
            for row in range(size):
                for col in range(size):
                    for w, h in shapes:
                        boxes.append([(col + 0.5) / cells, (row + 0.5) / cells, w, h])
        corners = np.array([(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2) for cx, cy, w, h in boxes],
                           dtype=np.float32)
        return np.array(boxes, dtype=np.float32), corners

    def item(self, i: int, rng: np.random.Generator, encode: bool = True):
        data = self.dataset.images.read(i)
        decoded = Image.open(io.BytesIO(data))  # full-size decode
        image = np.asarray(decoded if decoded.mode == "RGB" else decoded.convert("RGB"))
        boxes, labels = self.dataset.index.boxes_of(i)
        image, boxes, labels = self._crop(image, boxes.astype(np.float32), labels, rng)
        crop_h, crop_w = image.shape[:2]
        out_h, out_w = self.cfg.image_size
        image = cv2.resize(image, (out_w, out_h)) if cv2 else np.asarray(
            Image.fromarray(image).resize((out_w, out_h), Image.Resampling.BILINEAR))
        boxes = boxes / np.array([crop_w, crop_h, crop_w, crop_h], np.float32)
        if rng.uniform() < 0.5:
            image = cv2.flip(image, 1) if cv2 else np.ascontiguousarray(image[:, ::-1])
            boxes = np.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], axis=1)
        image = self._color_adjust(image, rng)
        image = ((image.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)
        if not encode:
            return np.ascontiguousarray(image), boxes, labels
        loc, label, matched = self._encode(boxes, labels)
        return np.ascontiguousarray(image), loc, label, matched

    @staticmethod
    def _color_adjust(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """MindSpore's RandomColorAdjust (uint8 OpenCV blends, random order) with cv2, or PIL's
        equivalent blends where OpenCV is missing."""
        for k in rng.permutation(3):
            factor = rng.uniform(0.6, 1.4)
            if cv2 is None:
                enhancer = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)[k]
                image = np.asarray(enhancer(Image.fromarray(image)).enhance(factor))
            elif k == 0:
                image = cv2.convertScaleAbs(image, alpha=factor)
            else:
                grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
                if k == 1:
                    grey = np.full_like(grey, int(grey.mean() + 0.5))
                grey = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
                image = cv2.addWeighted(image, factor, grey, 1 - factor, 0.0)
        return image

    @staticmethod
    def _iou_one(boxes: np.ndarray, rect: np.ndarray) -> np.ndarray:
        wh = np.clip(np.minimum(boxes[:, 2:], rect[2:]) - np.maximum(boxes[:, :2], rect[:2]), 0, None)
        inter = wh[:, 0] * wh[:, 1]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return inter / (area + (rect[2] - rect[0]) * (rect[3] - rect[1]) - inter)

    def _crop(self, image, boxes, labels, rng):
        height, width = image.shape[:2]
        min_iou = (None, 0.1, 0.3, 0.5, 0.7, 0.9)[rng.integers(6)]
        if min_iou is None:
            return image, boxes, labels
        for _ in range(50):
            w, h = rng.uniform(0.3, 1.0) * width, rng.uniform(0.3, 1.0) * height
            if not 0.5 <= h / w <= 2:
                continue
            left, top = rng.uniform() * (width - w), rng.uniform() * (height - h)
            rect = np.array([int(left), int(top), int(left + w), int(top + h)], np.float32)
            overlap = self._iou_one(boxes, rect)
            touching = overlap > 0
            if not touching.any():
                continue
            if overlap[touching].min() < min_iou and overlap[touching].max() > min_iou + 0.2:
                continue
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            keep = ((centres > rect[:2]) & (centres < rect[2:])).all(axis=1) & touching
            if not keep.any():
                continue
            x0, y0, x1, y1 = rect.astype(int)
            kept = boxes[keep].copy()
            kept[:, :2] = np.maximum(kept[:, :2], rect[:2]) - rect[:2]
            kept[:, 2:] = np.minimum(kept[:, 2:], rect[2:]) - rect[:2]
            return image[y0:y1, x0:x1], kept, labels[keep]
        return image, boxes, labels

    def _encode(self, boxes: np.ndarray, labels: np.ndarray):
        """Per image: match ground truths one by one against all anchors, then encode."""
        if self.regenerate_anchors:
            self.anchors_cxcywh, self.anchors_xyxy = self._default_boxes()
        num_anchors = len(self.anchors_xyxy)
        best = np.zeros(num_anchors, np.float32)
        matched_box = np.zeros((num_anchors, 4), np.float32)
        matched_label = np.zeros(num_anchors, np.int64)
        for box, label in zip(boxes, labels):
            scores = self._iou_one(self.anchors_xyxy, box)
            scores[np.argmax(scores)] = 2.0
            take = (scores > self.cfg.match_threshold) & (scores > best)
            best = np.where(take, scores, best)
            matched_label = np.where(take, label, matched_label)
            matched_box = np.where(take[:, None], box, matched_box)
        positive = np.nonzero(matched_label)[0]
        loc = np.zeros((num_anchors, 4), np.float32)
        b, a = matched_box[positive], self.anchors_cxcywh[positive]
        centre = ((b[:, :2] + b[:, 2:]) / 2 - a[:, :2]) / (a[:, 2:] * self.cfg.prior_scaling[0])
        size = np.log(np.maximum((b[:, 2:] - b[:, :2]) / a[:, 2:], 1e-6)) / self.cfg.prior_scaling[1]
        loc[positive] = np.concatenate([centre, size], axis=1)
        return loc, matched_label, len(positive)

    def batch(self, indices, rng, encode: bool = True):
        items = [self.item(i, rng, encode) for i in indices]
        if not encode:  # boxes differ in number: the images are stacked, boxes kept per image
            return np.stack([item[0] for item in items]), [item[1:] for item in items]
        return tuple(np.stack(column) for column in zip(*items))


def bench_throughput(args) -> dict:
    torch.set_num_threads(1)
    if cv2 is not None:
        cv2.setNumThreads(1)
    out = Path(args.out)
    coco_root, packed_root = out / "coco_like", out / "coco_like_packed"
    if not (coco_root / "annotations" / "instances_train2017.json").is_file():
        coco_info = coco_like_folder(coco_root, args.images, seed=0)
    else:
        coco_info = {"images": args.images, "mean_file_kb": round(float(np.mean(
            [p.stat().st_size for p in (coco_root / "train2017").glob("*.jpg")])) / 1024, 1)}
    if not (packed_root / "train2017" / "manifest.json").is_file():
        prepare_coco(coco_root, packed_root, workers=2, overwrite=True, progress=False)
    # the seed's recipe (300x300, 1917 default boxes) with the synthetic set's three classes
    cfg = ssdzoo.load_config("ssd_mobilenetv2", [
        f"batch_size={args.batch}", "num_classes=4", "classes=[background, circle, square, triangle]"])
    if args.image_size != 300:  # a smaller input: the SSD levels of the demo recipe at this size
        demo = ssdzoo.load_config("demo")
        steps = tuple(s * args.image_size // 128 for s in demo.steps)
        cfg = demo.replace(image_size=(args.image_size, args.image_size), steps=steps,
                           feature_size=tuple(-(-args.image_size // s) for s in steps))
    anchors = ssdzoo.default_boxes(cfg)
    packed, raw = load_dataset(packed_root, cfg, True), load_dataset(coco_root, cfg, True)
    seed_styles = {"seed_style": SeedStylePipeline(packed, cfg, regenerate_anchors=True),
                   "seed_style_anchors_once": SeedStylePipeline(packed, cfg, regenerate_anchors=False)}
    reference = seed_styles["seed_style_anchors_once"].anchors_cxcywh
    assert np.allclose(reference, anchors.numpy(), atol=1e-6), "the seed-style default boxes differ"
    batches = [list(range(s, s + args.batch)) for s in range(0, len(packed) - args.batch + 1, args.batch)]

    def ssdzoo_batch(dataset, b, encode=True):
        batch = collate([dataset[SampleKey(i, 0, 0)] for i in batches[b]])
        if encode:
            ssdzoo.encode(batch.boxes_xyxy, batch.labels, anchors, cfg)

    def seed_batch(pipeline, b, encode=True):
        pipeline.batch(batches[b], np.random.default_rng(b), encode=encode)

    pipelines = {"ssdzoo_packed": partial(ssdzoo_batch, packed), "ssdzoo_raw_folder": partial(ssdzoo_batch, raw),
                 **{name: partial(seed_batch, pipeline) for name, pipeline in seed_styles.items()}}
    # the same without target encoding: the data pipeline alone
    pipelines.update({f"{name}_no_encode": partial(run, encode=False)
                      for name, run in list(pipelines.items()) if name != "ssdzoo_raw_folder"})

    def decode_only(b):  # the floor both pay: libjpeg-turbo at full scale, pixels to numpy
        for i in batches[b]:
            np.asarray(Image.open(io.BytesIO(packed.images.read(i))))

    pipelines["decode_only_full_scale"] = decode_only
    scales = []  # DCT scale of each ssdzoo decode
    original_decode = transforms.decode
    transforms.decode = lambda *a, **k: scales.append(original_decode(*a, **k).scale) or original_decode(*a, **k)
    ssdzoo_batch(packed, 0, encode=False)
    transforms.decode = original_decode
    # Every pipeline runs batch b, then every pipeline batch b + 1 ...; each round repeats the same
    # work (same augmentation), and each batch counts with its fastest round: a busy machine
    # slows all pipelines alike and the minimum discards the slowed repeats.
    for b in range(len(batches)):  # warm-up: page cache, code paths
        for run in pipelines.values():
            run(b)
    times = {name: np.full((len(batches), args.rounds), np.inf) for name in pipelines}
    for round_ in range(args.rounds):
        for b in range(len(batches)):
            for name, run in pipelines.items():
                start = time.perf_counter()
                run(b)
                times[name][b, round_] = time.perf_counter() - start
    images = len(batches) * args.batch
    per_core = {name: round(images / float(t.min(axis=1).sum()), 1) for name, t in times.items()}
    return {
        "mode": "throughput", "dataset": coco_info, "image_size": list(cfg.image_size),
        "anchors": len(anchors), "batch": args.batch, "images_per_round": images, "rounds": args.rounds,
        "images_per_second_one_core": per_core,
        "speedup_vs_seed_style": {k: round(v / per_core["seed_style"], 2) for k, v in per_core.items()},
        "speedup_vs_seed_style_anchors_once": {
            k: round(v / per_core["seed_style_anchors_once"], 2) for k, v in per_core.items()},
        "speedup_no_encode": round(per_core["ssdzoo_packed_no_encode"] / per_core["seed_style_no_encode"], 2),
        "seed_style_resize": "cv2" if cv2 is not None else "PIL",
        "ssdzoo_decodes_at_reduced_scale": f"{sum(s > 1 for s in scales)} of {len(scales)}",
        "torch_threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------------------------------
# scale


def scale_folder(root: Path, images: int, boxes: int, seed: int) -> dict:
    """``images`` small JPEGs (64..128 px a side) with ``boxes`` boxes in all (as even as
    possible), COCO layout; rectangles of random colour on noisy gradients."""
    (root / "train2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    per_image = np.full(images, boxes // images) + (np.arange(images) < boxes % images)
    coco_images, annotations = [], []
    for i in range(images):
        width, height = (int(v) for v in rng.integers(64, 129, size=2))
        grid = rng.integers(0, 255, size=(3, 3, 3), dtype=np.uint8)
        image = Image.fromarray(grid).resize((width, height), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(image)
        for _ in range(per_image[i]):
            w, h = (float(v) for v in rng.uniform(4, 0.5 * min(width, height), size=2))
            x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
            draw.rectangle([x, y, x + w, y + h], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": int(rng.integers(1, 4)), "bbox": [x, y, w, h],
                                "area": w * h, "iscrowd": 0, "segmentation": [[x, y, x + w, y, x + w, y + h]]})
        name = f"{i + 1:012d}.jpg"
        image.save(root / "train2017" / name, quality=90)
        coco_images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
    categories = [{"id": k, "name": n, "supercategory": "shape"} for k, n in enumerate(("circle", "square", "triangle"), 1)]
    (root / "annotations" / "instances_train2017.json").write_text(
        json.dumps({"images": coco_images, "annotations": annotations, "categories": categories}))
    return {"images": images, "boxes": len(annotations)}


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    return children


def _memory(pid: int) -> dict[str, int] | None:
    """Rss, Pss and Uss (private pages) of one process, in bytes."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in text.splitlines()[1:]}
    return {"rss": values["Rss"], "pss": values["Pss"],
            "uss": values["Private_Clean"] + values["Private_Dirty"]}


class TreeMonitor:
    """Samples the memory of a process and its descendants every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid, self.interval = pid, interval
        self.peak_total_pss = 0
        self.peak = {}  # pid -> max of each measure
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            children, tree, frontier = _children(), [], [self.pid]
            while frontier:
                pid = frontier.pop()
                tree.append(pid)
                frontier.extend(children.get(pid, []))
            total = 0
            for pid in tree:
                memory = _memory(pid)
                if memory is None:
                    continue
                total += memory["pss"]
                peak = self.peak.setdefault(pid, dict(memory))
                for key, value in memory.items():
                    peak[key] = max(peak[key], value)
            self.peak_total_pss = max(self.peak_total_pss, total)
            self._stop.wait(self.interval)

    def report(self) -> dict:
        mib = 1 / 2**20
        main = self.peak.get(self.pid, {"rss": 0, "pss": 0, "uss": 0})
        others = [v for pid, v in self.peak.items() if pid != self.pid]
        return {"peak_total_pss_mib": round(self.peak_total_pss * mib, 1),
                "main_peak_rss_mib": round(main["rss"] * mib, 1),
                "main_peak_uss_mib": round(main["uss"] * mib, 1),
                "children": len(others),
                "child_peak_rss_mib": [round(v["rss"] * mib, 1) for v in others],
                "child_peak_uss_mib": [round(v["uss"] * mib, 1) for v in others]}


def bench_scale(args) -> dict:
    out = Path(args.out)
    src, packed = out / "scale_coco", out / "scale_packed"
    start = time.perf_counter()
    generated = {"images": args.images, "boxes": args.boxes, "reused": True}
    if not (src / "annotations" / "instances_train2017.json").is_file():
        generated = {**scale_folder(src, args.images, args.boxes, seed=0),
                     "seconds": round(time.perf_counter() - start, 1)}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # what a process that only imports ssdzoo (torch, timm, ...) holds: the floor of the runs below
    _, baseline = run_measured([sys.executable, "-c", "import time, ssdzoo; time.sleep(2)"], env)
    command = [sys.executable, "-m", "ssdzoo", "prepare", "coco", str(src), str(packed),
               "--workers", str(args.workers), "--overwrite"]
    start = time.perf_counter()
    _, memory = run_measured(command, env)
    wall = time.perf_counter() - start
    summary = json.loads((packed / "train2017" / "summary.json").read_text())
    result = {
        "mode": "scale", "generated": generated, "import_ssdzoo_baseline": baseline,
        "prepare": {"command": " ".join(command[1:]), "wall_seconds": round(wall, 1),
                    "images_per_second_wall": round(args.images / wall, 1),
                    "images_per_second_in_prepare": summary["images_per_second"],
                    "images": summary["images"], "boxes": summary["boxes"],
                    "bytes": summary["bytes"], "shards": summary["shards"], **memory},
        "loader": {},
    }
    for index_kind in ("flat_arrays", "json_objects"):
        command = [sys.executable, str(Path(__file__).resolve()), "_loader", "--out", str(out),
                   "--index", index_kind, "--batches", str(args.loader_batches)]
        output, memory = run_measured(command, env, interval=0.25)
        result["loader"][index_kind] = {**json.loads(output.strip().splitlines()[-1]), **memory}
    return result


def run_measured(command: list[str], env: dict, interval: float = 0.1) -> tuple[str, dict]:
    """Run ``command``; return its output and memory: the exact peak RSS of its largest process
    (the kernel's count, from wait4) and the sampled figures of ``TreeMonitor``."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with TreeMonitor(process.pid, interval=interval) as monitor:
        output = process.stdout.read().decode()
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output}")
    return output, {"largest_process_peak_rss_mib": round(usage.ru_maxrss / 1024, 1), **monitor.report()}


class JsonObjectsIndex(torch.utils.data.Dataset):
    """The usual COCO dataset: the parsed json (one dict per annotation) indexed by image, with
    the same decoding and augmentation as ssdzoo's. Workers touching these objects' reference
    counts copy their pages (copy-on-access)."""

    def __init__(self, packed_dataset, annotation_file: Path):
        self.inner = packed_dataset
        coco = json.loads(annotation_file.read_text())
        self.annotations_of: dict[int, list[dict]] = {}
        for ann in coco["annotations"]:
            self.annotations_of.setdefault(ann["image_id"], []).append(ann)
        self.coco = coco

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, key):
        image_id = int(self.inner.index.image_ids[key.index])
        anns = self.annotations_of[image_id]
        _ = [(a["bbox"], a["category_id"], a["segmentation"]) for a in anns]
        return self.inner[key]


def loader_child(args) -> None:
    """Run in a subprocess by ``bench_scale``: iterate a 4-worker loader, print a JSON line."""
    out = Path(args.out)
    cfg = ssdzoo.load_config("demo", ["num_parallel_workers=4", "batch_size=32"])
    dataset = load_dataset(out / "scale_packed", cfg, True)
    if args.index == "json_objects":
        dataset = JsonObjectsIndex(dataset, out / "scale_coco" / "annotations" / "instances_train2017.json")
    loader = make_loader(dataset, cfg, train=True, seed=0)
    loader.sampler.set_epoch(0)
    start, count = time.perf_counter(), 0
    for k, batch in enumerate(loader):
        count += len(batch.image_ids)
        if k + 1 == args.batches:
            break
    seconds = time.perf_counter() - start
    time.sleep(1.0)  # let the monitor sample the grown workers
    print(json.dumps({"index": args.index, "workers": 4, "images": count,
                      "images_per_second": round(count / seconds, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["throughput", "scale", "_loader"])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_data"))
    parser.add_argument("--images", type=int, default=None, help="256 (throughput) or 20000 (scale)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=300, help="throughput: network input side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--boxes", type=int, default=150_000)
    parser.add_argument("--workers", type=int, default=2, help="prepare --workers")
    parser.add_argument("--loader-batches", type=int, default=300)
    parser.add_argument("--index", default="flat_arrays")
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.mode == "_loader":
        loader_child(args)
        return
    if args.images is None:
        args.images = 256 if args.mode == "throughput" else 20_000
    result = bench_throughput(args) if args.mode == "throughput" else bench_scale(args)
    text = json.dumps(result, indent=1)
    suffix = f"_{args.image_size}" if args.mode == "throughput" else ""
    (Path(args.out) / f"bench_data_{args.mode}{suffix}.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
