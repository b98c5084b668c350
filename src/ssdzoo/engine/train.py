"""The training loop: the seed's recipe on one device or many (torchrun + DDP).

Per step: images and padded ground truth go to the device, targets are matched and encoded
there for the whole batch, the model runs under autocast where the device supports it, and the
loss is normalized by the positives of the global batch (so N devices with batch B train exactly
like one device with batch N x B, up to BN statistics, which stay per device as in the seed
unless ``sync_bn``). The learning rate is set every step from ``lr_schedule``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import yaml
from torch import nn
from tqdm import tqdm

from ..anchors import default_boxes
from ..config import Config, config_from_dict
from ..finetune import load_for_finetuning
from ..loss import ssd_loss
from ..model import build_model
from ..schedule import lr_schedule
from ..targets import encode
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import DistInfo, all_reduce_sum, barrier, init_process_group, resolve_device
from .evaluate import evaluate, format_table
from .records import TrainingRecords

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training diverged; the last checkpoint on disk is the last good one."""


@dataclass
class Progress:
    """Where a run stands: what a checkpoint needs to continue it."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken (the schedule's position)
    best_ap: float = -1.0


def train(cfg: Config, *, resume: Optional[str | Path] = None, epochs: Optional[int] = None,
          progress_bar: Optional[bool] = None, weights: Optional[str | Path] = None) -> dict:
    """Train ``cfg`` on ``cfg.data_dir``; checkpoints and records go to ``cfg.ckpt_save_dir``.

    ``resume`` continues from a checkpoint's position; ``epochs`` stops this call after that
    many epochs (the schedule still spans ``epoch_size``; resume later to go on). ``weights``
    starts a new run from a full model trained on other classes (``finetune``). ``classes:
    null`` takes the training split's. Under torchrun each process trains on its own part of
    the data with DDP. Returns a summary (epochs, checkpoint paths, best and last validation
    metrics).
    """
    if resume and weights:
        raise ValueError("--resume continues a run, --weights starts a new one from a model: give one of them")
    from ..data import resolve_classes

    cfg = resolve_classes(cfg)
    info = DistInfo.from_env()
    device = resolve_device(cfg.device, info)
    init_process_group(info, device)
    try:
        return _Run(cfg, info, device, progress_bar, weights=weights, init_backbone=not resume).fit(resume, epochs)
    finally:
        if info.enabled:
            torch.distributed.destroy_process_group()


def build_optimizer(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """The seed's Momentum SGD, or AdamW. Like MindSpore, no weight decay on BN's gamma/beta."""
    norm_types = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
    no_decay = {id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters(recurse=False)}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in no_decay], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}]
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, **fused)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, **fused)


def autocast_dtype(cfg: Config, device: torch.device) -> Optional[torch.dtype]:
    """Mixed precision on GPUs for amp_level O1-O3 (bf16 where supported, else fp16); fp32 on
    the CPU, where autocast is slower for these convs."""
    if device.type != "cuda" or cfg.amp_level == "O0":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def set_train_mode(model: nn.Module, *, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


class TrainStep:
    """One optimizer step on a batch: targets encoded on the device, autocast forward, loss,
    backward, update. Returns this device's loss (detached, not synchronized)."""

    def __init__(self, forward: nn.Module, optimizer: torch.optim.Optimizer, cfg: Config,
                 device: torch.device, info: DistInfo = DistInfo()):
        self.forward, self.optimizer, self.cfg, self.device, self.info = forward, optimizer, cfg, device, info
        self.anchors_cxcywh = default_boxes(cfg).to(device)
        self.amp_dtype = autocast_dtype(cfg, device)
        self.scaler = torch.amp.GradScaler("cuda", init_scale=cfg.loss_scale, enabled=self.amp_dtype == torch.float16)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    def __call__(self, batch) -> torch.Tensor:
        cfg, device = self.cfg, self.device
        images = batch.images.to(device, non_blocking=True, memory_format=self.memory_format)
        gt_boxes_xyxy = batch.boxes_xyxy.to(device, non_blocking=True)
        gt_labels = batch.labels.to(device, non_blocking=True)
        with torch.no_grad():
            target_loc, target_labels = encode(gt_boxes_xyxy, gt_labels, self.anchors_cxcywh, cfg)
            num_matched = all_reduce_sum((target_labels > 0).sum(), self.info)
        amp = torch.autocast(device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        with amp:
            loc, logits = self.forward(images)
        # DDP averages gradients over devices: scale by the device count so that the update is
        # the gradient of the global batch's loss
        loss = ssd_loss(loc, logits, target_loc, target_labels, cfg, num_matched=num_matched) * self.info.world_size
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach() / self.info.world_size


class _Run:
    """One training run's state; ``fit`` is the loop."""

    def __init__(self, cfg: Config, info: DistInfo, device: torch.device, progress_bar: Optional[bool], *,
                 weights: Optional[str | Path] = None, init_backbone: bool = True):
        from ..data import load_dataset, make_loader

        self.cfg, self.info, self.device = cfg, info, device
        self.show_progress = info.is_main and (sys.stderr.isatty() if progress_bar is None else progress_bar)
        self.out_dir = Path(cfg.ckpt_save_dir)
        torch.manual_seed(cfg.seed + info.rank)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest convs

        model = build_model(cfg, init_backbone=init_backbone and not weights)
        if weights:
            load_for_finetuning(model, weights, cfg)
        model = model.to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if info.enabled and cfg.sync_bn:
            if device.type != "cuda":
                raise ValueError("sync_bn needs CUDA devices; on the CPU use freeze_bn or per-device BN")
            from timm.layers import convert_sync_batchnorm

            model = convert_sync_batchnorm(model)
        self.model = model  # the plain module: checkpoints and evaluation use it
        self.forward = model
        if cfg.compile:
            self.forward = torch.compile(self.forward)
        if info.enabled:
            self.forward = nn.parallel.DistributedDataParallel(
                self.forward, device_ids=[device.index] if device.type == "cuda" else None)

        self.train_set = load_dataset(cfg.data_dir, cfg, train=True)
        self.loader = make_loader(self.train_set, cfg, train=True, rank=info.rank,
                                  world_size=info.world_size, seed=cfg.seed)
        self.val_set = load_dataset(cfg.data_dir, cfg, train=False) if cfg.eval_while_train and info.is_main else None
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{cfg.data_dir}: {len(self.train_set)} training images give no full batch of "
                             f"{cfg.batch_size} x {info.world_size} devices")
        self.schedule = lr_schedule(cfg, self.steps_per_epoch)
        self.optimizer = build_optimizer(model, cfg, device)
        self.step = TrainStep(self.forward, self.optimizer, cfg, device, info)
        self.scaler = self.step.scaler
        self.amp_dtype = self.step.amp_dtype
        self.progress = Progress()
        self.records = None

    # --- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": self.progress.epoch, "step": self.progress.step,
                "best_ap": self.progress.best_ap, "steps_per_epoch": self.steps_per_epoch,
                "rng": rng_state(), "config": self.cfg.to_dict()}

    def restore(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)
        saved_cfg = config_from_dict(ckpt["config"], source=f"{path} (saved config)")
        changed = sorted(k for k, v in self.cfg.to_dict().items() if ckpt["config"].get(k) != v)
        if changed and self.info.is_main:
            log.warning("resuming %s with changed config keys: %s", path, ", ".join(changed))
        if saved_cfg.num_ssd_boxes != self.cfg.num_ssd_boxes:
            raise ValueError(f"{path} was trained with {saved_cfg.num_ssd_boxes} default boxes, "
                             f"the config gives {self.cfg.num_ssd_boxes}")
        if ckpt["steps_per_epoch"] != self.steps_per_epoch and self.info.is_main:
            log.warning("%s: %d steps per epoch then, %d now: the schedule position moves",
                        path, ckpt["steps_per_epoch"], self.steps_per_epoch)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.progress = Progress(ckpt["epoch"], ckpt["step"], ckpt["best_ap"])

    # --- the loop ------------------------------------------------------------------------------
    def fit(self, resume: Optional[str | Path], epochs: Optional[int]) -> dict:
        cfg, info = self.cfg, self.info
        if resume:
            self.restore(resume)
        if info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            self.records = TrainingRecords(self.out_dir, resume=bool(resume))
            log.info("training %s on %s: %d images, %d steps/epoch x %d epochs, batch %d x %d device(s), %s",
                     cfg.backbone, self.device, len(self.train_set), self.steps_per_epoch, cfg.epoch_size,
                     cfg.batch_size, info.world_size, self.amp_dtype or "fp32")
        metrics = None
        stop = cfg.epoch_size if epochs is None else min(cfg.epoch_size, self.progress.epoch + epochs)
        for epoch in tqdm(range(self.progress.epoch, stop), desc="epochs", initial=self.progress.epoch,
                          total=cfg.epoch_size, disable=not self.show_progress):
            loss, seconds = self.train_epoch(epoch)
            self.progress.epoch = epoch + 1
            metrics = self.maybe_evaluate(epoch + 1)
            if info.is_main:
                save_checkpoint(self.state(), self.out_dir / "last.pt")
                images = self.steps_per_epoch * cfg.batch_size * info.world_size
                lr = float(self.schedule[self.progress.step - 1])
                self.records.epoch(epoch + 1, loss=loss, lr=lr, images_per_s=images / seconds,
                                   seconds=seconds, metrics=metrics)
                ap_text = f", AP {metrics['AP']:.4f}, AP50 {metrics['AP50']:.4f}" if metrics else ""
                log.info("epoch %d/%d: loss %.4f, lr %.5f, %.1f img/s%s", epoch + 1, cfg.epoch_size, loss, lr,
                         images / seconds, ap_text)
            barrier(info)
        if self.records:
            self.records.close()
        best = self.out_dir / "best.pt"
        return {"epochs": self.progress.epoch, "last": str(self.out_dir / "last.pt"),
                "best": str(best) if best.exists() else None,
                "best_ap": self.progress.best_ap if self.progress.best_ap >= 0 else None, "metrics": metrics}

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over this rank's part of the data; returns the mean global loss and seconds."""
        cfg, info = self.cfg, self.info
        self.loader.sampler.set_epoch(epoch)
        set_train_mode(self.model, freeze_bn=cfg.freeze_bn)
        loss_sum = torch.zeros((), device=self.device)
        pending = torch.zeros((), device=self.device)  # losses since the last finiteness check
        start = time.perf_counter()
        steps = tqdm(self.loader, desc=f"epoch {epoch + 1}", leave=False, disable=not self.show_progress)
        for i, batch in enumerate(steps):
            lr = float(self.schedule[min(self.progress.step, len(self.schedule) - 1)])
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss = self.step(batch)
            pending += loss
            self.progress.step += 1
            if (i + 1) % cfg.log_interval == 0 or i + 1 == self.steps_per_epoch:
                mean = self.check_finite(pending, steps_since=(i % cfg.log_interval) + 1, epoch=epoch)
                loss_sum += pending
                pending.zero_()
                steps.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.5f}")
                if self.records:
                    self.records.step(self.progress.step, loss=mean, lr=lr)
        seconds = time.perf_counter() - start
        return float(all_reduce_sum(loss_sum, info)) / (info.world_size * self.steps_per_epoch), seconds

    def check_finite(self, pending: torch.Tensor, *, steps_since: int, epoch: int) -> float:
        """Mean global loss of the last steps; stops every rank together if it is not finite."""
        mean = float(all_reduce_sum(pending, self.info)) / (self.info.world_size * steps_since)
        if not math.isfinite(mean):
            last = self.out_dir / "last.pt"
            kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written"
            raise NonFiniteLossError(
                f"the loss became {mean} in epoch {epoch + 1} (step {self.progress.step}); training stopped "
                f"and {kept}. Try a lower lr, a longer warmup, or grad_clip.")
        return mean

    def maybe_evaluate(self, epoch: int) -> Optional[dict]:
        """COCO mAP on the val split when due (rank 0); a new best is saved as best.pt."""
        cfg = self.cfg
        due = (cfg.eval_while_train and epoch >= cfg.eval_start_epoch
               and ((epoch - cfg.eval_start_epoch) % cfg.eval_interval == 0 or epoch == cfg.epoch_size))
        if not due or not self.info.is_main:
            return None
        metrics = evaluate(self.model, self.val_set, cfg, device=self.device, progress=self.show_progress)
        if self.show_progress:
            tqdm.write(format_table(metrics))
        if metrics["AP"] > self.progress.best_ap:
            self.progress.best_ap = metrics["AP"]
            save_checkpoint({**self.state(), "metrics": metrics}, self.out_dir / "best.pt")
        return metrics
