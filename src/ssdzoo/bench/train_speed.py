"""Training throughput, images/s of full optimizer steps: ssdzoo's ``TrainStep`` and
torchvision's ssdlite320_mobilenet_v3_large, on the same synthetic batches, interleaved.

A step is everything between two batches: the batch's copy to the device (and to channels-last
layout), target matching and encoding, forward, loss, backward, optimizer update. Each model
takes its own input: ssdzoo the config's image size, normalized; torchvision 320x320 pixels in
[0, 1], which its own transform normalizes (and resizes, a no-op size here), with ground truth
in pixels, the format its training code takes. Both see the same boxes (normalized, scaled).
With ``--data`` the ssdzoo step also runs on the real loader (``load_dataset`` +
``make_loader``), and the time the step waits for the next batch is measured apart; a
dataset with other categories than the config's (``ssdzoo synth``'s three shapes under a COCO
recipe) gets a model with its own class count for that run.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import Tensor

from ..config import Config
from ..data import (Batch, PackedSplit, batch_to_device, load_dataset, make_backend_loader, read_coco_json,
                    resolve_data_backend)
from ..data.coco import annotation_path
from ..data.dataset import TRAIN_SPLIT
from ..data.packed import is_packed_split
from ..engine.train import TrainStep, autocast_dtype, build_optimizer, set_train_mode
from ..model import build_model
from .box_ops import random_ground_truth
from .timing import Timing, interleaved, synchronizer

log = logging.getLogger(__name__)

TORCHVISION_NAME = "torchvision ssdlite320_mobilenet_v3_large"
TORCHVISION_SIZE = 320  # its fixed input side
BOXES_PER_IMAGE = 7  # COCO's mean is about 7.3


def synthetic_batch(cfg: Config, batch_size: int, *, boxes_per_image: int = BOXES_PER_IMAGE,
                    seed: int = 0) -> Batch:
    """A ``Batch`` as the loader gives it: (B, 3, H, W) normalized-like noise at cfg.image_size,
    ``boxes_per_image`` random boxes (2-40% of a side) and labels per image."""
    generator = torch.Generator().manual_seed(seed)
    boxes_xyxy, labels = random_ground_truth(batch_size, boxes_per_image, num_classes=cfg.num_classes,
                                             generator=generator)
    height, width = cfg.image_size
    images = torch.randn(batch_size, 3, height, width, generator=generator)
    return Batch(images=images, boxes_xyxy=boxes_xyxy, labels=labels, image_ids=torch.arange(batch_size),
                 image_hw=torch.tensor([[height, width]]).repeat(batch_size, 1))


def ssdzoo_train_step(cfg: Config, device: torch.device, *, channels_last: bool, seed: int = 0) -> TrainStep:
    """A fresh model (random init, ``seed``) in training mode with the config's optimizer."""
    cfg = cfg.replace(channels_last=channels_last)
    torch.manual_seed(seed)
    model = build_model(cfg).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    set_train_mode(model, freeze_bn=cfg.freeze_bn)
    return TrainStep(model, build_optimizer(model, cfg, device), cfg, device)


class TorchvisionTrainStep:
    """One optimizer step of torchvision's ssdlite320_mobilenet_v3_large on its own input
    format: its transform, its matching, its hard-negative-mined loss; SGD with momentum (its
    reference recipe's optimizer), the same autocast as ssdzoo's on GPUs."""

    def __init__(self, num_classes: int, device: torch.device, *, channels_last: bool,
                 amp_dtype: Optional[torch.dtype], seed: int = 0):
        from torchvision.models.detection import ssdlite320_mobilenet_v3_large

        torch.manual_seed(seed)
        model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
        model = model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model, self.device, self.amp_dtype = model.train(), device, amp_dtype
        fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5, **fused)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    @staticmethod
    def inputs(batch: Batch, *, seed: int = 0) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
        """``batch``'s ground truth in torchvision's format (boxes in pixels of 320x320 images
        in [0, 1], padding rows dropped), with noise images of that size."""
        generator = torch.Generator().manual_seed(seed)
        images = [torch.rand(3, TORCHVISION_SIZE, TORCHVISION_SIZE, generator=generator) for _ in batch.labels]
        targets = [{"boxes": boxes_xyxy[labels > 0] * TORCHVISION_SIZE, "labels": labels[labels > 0]}
                   for boxes_xyxy, labels in zip(batch.boxes_xyxy, batch.labels)]
        return images, targets

    def __call__(self, images: list[Tensor], targets: list[dict[str, Tensor]]) -> Tensor:
        images = [image.to(self.device, non_blocking=True) for image in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
        amp = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        with amp:
            losses = self.model(images, targets)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()


def bench_training(cfgs: dict[str, Config], device: torch.device, *, batch_size: int, channels_last: bool,
                   torchvision: bool, rounds: int, steps_per_round: int, warmup: int) -> dict:
    """Images/s of each config's step and torchvision's, on synthetic batches, interleaved."""
    steps, calls = {}, {}
    last_loss: dict[str, Tensor] = {}
    for name, cfg in cfgs.items():
        batch = _pinned(synthetic_batch(cfg, batch_size), device)
        steps[name] = step = ssdzoo_train_step(cfg, device, channels_last=channels_last)
        calls[name] = lambda step=step, batch=batch, name=name: last_loss.__setitem__(name, step(batch))
    if torchvision:
        first = next(iter(cfgs.values()))
        reference = TorchvisionTrainStep(first.num_classes, device, channels_last=channels_last,
                                         amp_dtype=autocast_dtype(first, device))
        images, targets = reference.inputs(synthetic_batch(first, batch_size))
        if device.type == "cuda":
            images = [image.pin_memory() for image in images]
        calls[TORCHVISION_NAME] = lambda: last_loss.__setitem__(TORCHVISION_NAME, reference(images, targets))
    log.info("training: %s, batch %d, %d warm-up + %d timed steps each", ", ".join(calls), batch_size,
             warmup, rounds * steps_per_round)
    timings = interleaved(calls, rounds=rounds, calls_per_round=steps_per_round, warmup=warmup,
                          sync=synchronizer(device))
    results = {}
    for name, timing in timings.items():
        cfg = cfgs.get(name)
        results[name] = {
            "img_per_s": round(batch_size / (timing.median_ms / 1e3), 2),
            "step": timing.to_dict(),
            "input_hw": list(cfg.image_size) if cfg else [TORCHVISION_SIZE, TORCHVISION_SIZE],
            "precision": _precision(steps[name].amp_dtype if cfg else reference.amp_dtype),
            "last_loss": float(last_loss[name]),
        }
    return {"batch": batch_size, "channels_last": channels_last, "boxes_per_image": BOXES_PER_IMAGE,
            "variants": results}


def bench_loader_training(cfg: Config, data: str | Path, device: torch.device, *, batch_size: int,
                          channels_last: bool, workers: int, steps: int, warmup: int) -> dict:
    """Images/s of ``TrainStep`` fed by the real loader over ``data``, and how long it waited
    for batches. Steps are not synchronized one by one (the loader and the device overlap, as
    in training); the window is, at both ends."""
    cfg = cfg.replace(num_parallel_workers=workers, batch_size=batch_size)
    classes = dataset_classes(data)
    if classes is not None and len(classes) != cfg.num_classes - 1:
        log.info("%s has %d categories: the loader run's model has %d classes (the config's %d)",
                 data, len(classes), len(classes) + 1, cfg.num_classes)
        cfg = cfg.replace(classes=("background", *classes), num_classes=len(classes) + 1)
    dataset = load_dataset(data, cfg, train=True)
    backend = resolve_data_backend(cfg, device)  # device: decode and augmentation count in the step's time
    loader = make_backend_loader(dataset, cfg, train=True, batch_size=batch_size, backend=backend)
    if len(loader) == 0:
        raise ValueError(f"{data}: {len(dataset)} training images give no full batch of {batch_size}")
    step = ssdzoo_train_step(cfg, device, channels_last=channels_last)
    sync = synchronizer(device)
    log.info("training through the loader: %s (%d images), %d workers, %d warm-up + %d timed steps",
             dataset.source, len(dataset), workers, warmup, steps)
    batches = _endless(loader)
    for _ in range(warmup):  # includes starting the workers
        step(batch_to_device(next(batches), device, cfg))
    sync()
    waits, loss = [], None
    start = time.perf_counter()
    for _ in range(steps):
        before = time.perf_counter()
        batch = next(batches)
        waits.append(time.perf_counter() - before)
        loss = step(batch_to_device(batch, device, cfg))
    sync()
    seconds = time.perf_counter() - start
    batches.close()
    return {
        "img_per_s": round(steps * batch_size / seconds, 2),
        "seconds": round(seconds, 3), "steps": steps, "batch": batch_size, "workers": workers,
        "data_backend": backend,
        "data_wait": Timing(tuple(waits)).to_dict(),
        "data_wait_share": round(sum(waits) / seconds, 3),
        "source": dataset.source, "images": len(dataset), "num_classes": cfg.num_classes,
        "last_loss": float(loss),
    }


def dataset_classes(data: str | Path) -> Optional[tuple[str, ...]]:
    """Category names of the training split ``load_dataset`` finds at ``data`` (None: none
    found; ``load_dataset`` then says what it expected)."""
    path = Path(data)
    for folder in (path, path / TRAIN_SPLIT):
        if is_packed_split(folder):
            return tuple(c["name"] for c in PackedSplit(folder).index.categories)
    if annotation_path(path, TRAIN_SPLIT).is_file():
        return tuple(c["name"] for c in read_coco_json(annotation_path(path, TRAIN_SPLIT)).categories)
    return None


def _precision(amp_dtype: Optional[torch.dtype]) -> str:
    return f"autocast {str(amp_dtype).removeprefix('torch.')}" if amp_dtype else "fp32"


def _endless(loader) -> Iterator[Batch]:
    """The loader's batches, epoch after epoch."""
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        yield from loader


def _pinned(batch: Batch, device: torch.device) -> Batch:
    """Page-locked host tensors on CUDA, so the step's copies are asynchronous as the loader's."""
    return Batch(*(t.pin_memory() for t in batch)) if device.type == "cuda" else batch
