"""The training loop: the seed's recipe on one device or many (torchrun + DDP).

Per step: images and padded ground truth go to the device, targets are matched and encoded
there for the whole batch, the model runs under autocast where the device supports it, and the
loss is normalized by the positives of the global batch (so N devices with batch B train exactly
like one device with batch N x B, up to BN statistics, which stay per device as in the seed
unless ``sync_bn``). The learning rate is set every step from ``lr_schedule``.

What a run survives (each in its own module): SIGTERM and Ctrl-C finish the step, save and stop
(preemption.py); a periodic mid-epoch checkpoint covers SIGKILL; a resumed run continues at the
exact step, with the same batches and augmentation (the sampler starts where it stopped);
``ckpt_save_dir`` is guarded against a second run and keeps ``keep_checkpoint_max`` per-epoch
files (run_folder.py); failed writes stop with the path named (atomic.py); images that no
longer decode are skipped and counted. After every step the ranks agree, on a CPU group, on
whether to stop, to save, and how many images were skipped (distributed.py), so every rank
stops at the same step and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import yaml
from torch import nn
from tqdm import tqdm

from ..anchors import default_boxes
from ..atomic import WriteError, write_bytes
from ..config import Config, config_from_dict
from ..data.device_pipeline import batch_to_device
from ..finetune import load_for_finetuning
from ..loss import ssd_loss
from ..model import build_model
from ..schedule import lr_schedule
from ..targets import encode
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import (DistInfo, all_reduce_sum, broadcast, gather, init_process_group, resolve_device,
                          restart_hazard, sum_ints)
from .evaluate import evaluate, format_table
from .preemption import StopNow, StopSignals, TrainingInterrupted, signal_name
from .records import TrainingRecords
from .run_folder import Plan, RunFolder, RunFolderError

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training diverged; the last checkpoint on disk is the last good one."""


class UnreadableImagesError(ValueError):
    """More training images failed to decode in an epoch than ``max_unreadable_share`` allows."""


@dataclass
class Progress:
    """Where a run stands: what a checkpoint needs to continue it."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken (the schedule's position)
    best_ap: float = -1.0
    evaluated: int = 0  # the last epoch evaluated (eval_while_train)


@dataclass
class EpochTally:
    """The unfinished epoch's totals, carried by a mid-epoch checkpoint."""

    images: int = 0  # images of the epoch consumed so far, all ranks together
    loss_sum: float = 0.0  # of the per-step losses, all ranks together
    seconds: float = 0.0  # spent on the epoch before this process took it over
    skipped: list[str] = field(default_factory=list)  # images that failed to decode, all ranks


def train(cfg: Config, *, resume: Optional[str | Path] = None, epochs: Optional[int] = None,
          progress_bar: Optional[bool] = None, overwrite: bool = False,
          weights: Optional[str | Path] = None) -> dict:
    """Train ``cfg`` on ``cfg.data_dir``; checkpoints and records go to ``cfg.ckpt_save_dir``.

    ``resume``: a checkpoint to continue exactly (mid-epoch included), or "auto" for the latest
    one in ``ckpt_save_dir`` if there is one. A new run refuses a ``ckpt_save_dir`` that holds
    another run's checkpoints unless ``overwrite`` (which removes them first). ``weights`` starts
    a new run from a full model trained on other classes (``finetune``); with ``resume="auto"``
    it is used only when there is no checkpoint to continue. ``classes: null`` takes the training
    split's. ``epochs`` stops this call after that many epochs (the schedule still spans
    ``epoch_size``; resume later to go on). Under torchrun each process trains on its own part of
    the data with DDP. Returns a summary (epochs, checkpoint paths, best and last validation
    metrics), the same on every rank.

    Raises ``TrainingInterrupted`` after SIGTERM or Ctrl-C (a checkpoint at that step is saved),
    ``RunFolderError``, ``WriteError``, ``NonFiniteLossError`` or ``UnreadableImagesError``.
    """
    if resume not in (None, "auto") and weights:
        raise ValueError("--resume continues a run, --weights starts a new one from a model: give one of them "
                         "(with --resume auto, --weights is used only when there is nothing to continue)")
    from ..data import resolve_classes
    from ..data.dataset import close_loader

    cfg = resolve_classes(cfg)
    info = DistInfo.from_env()
    device = resolve_device(cfg.device, info)
    group = init_process_group(info, device)
    if info.is_main and restart_hazard():
        log.warning(restart_hazard())
    try:
        plan = _agreed_plan(RunFolder(cfg.ckpt_save_dir), resume, overwrite, info, group)
        fresh = not plan.resume
        run = _Run(cfg, info, device, group, progress_bar, weights=weights if fresh else None, init_backbone=fresh)
        try:
            return run.fit(plan, epochs)
        finally:
            close_loader(run.loader)  # every way out ends the loader's workers (no waiting on them at exit)
    finally:
        if info.enabled:
            torch.distributed.destroy_process_group()


def _agreed_plan(folder: RunFolder, resume, overwrite: bool, info: DistInfo, group) -> Plan:
    """Rank 0 reads the folder and decides; every rank gets its decision (or its error)."""
    decision = None
    if info.is_main:
        try:
            decision = folder.plan(resume, overwrite=overwrite)
        except RunFolderError as err:
            decision = str(err)
    decision = broadcast(decision, info, group)
    if isinstance(decision, str):
        raise RunFolderError(decision)
    return decision


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

    def __init__(self, cfg: Config, info: DistInfo, device: torch.device, group, progress_bar: Optional[bool], *,
                 weights: Optional[str | Path] = None, init_backbone: bool = True):
        from ..data import load_dataset, make_backend_loader, resolve_data_backend

        self.cfg, self.info, self.device, self.group = cfg, info, device, group
        self.show_progress = info.is_main and (sys.stderr.isatty() if progress_bar is None else progress_bar)
        self.folder = RunFolder(cfg.ckpt_save_dir)
        self.out_dir = self.folder.path
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
        self.train_set.skip_unreadable = True  # skipped, logged and counted (max_unreadable_share)
        backend = resolve_data_backend(cfg, device)
        log.info("data_backend %s: images decoded and augmented %s", backend,
                 "on the device" if backend == "device" else "by the loader's workers")
        self.loader = make_backend_loader(self.train_set, cfg, train=True, rank=info.rank,
                                          world_size=info.world_size, seed=cfg.seed,
                                          processes_per_node=info.local_world_size, backend=backend)
        self.val_set = load_dataset(cfg.data_dir, cfg, train=False) if cfg.eval_while_train and info.is_main else None
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{cfg.data_dir}: {len(self.train_set)} training images give no full batch of "
                             f"{cfg.batch_size} x {info.world_size} devices")
        self.epoch_images = self.steps_per_epoch * cfg.batch_size * info.world_size
        self.schedule = lr_schedule(cfg, self.steps_per_epoch)
        self.optimizer = build_optimizer(model, cfg, device)
        self.step = TrainStep(self.forward, self.optimizer, cfg, device, info)
        self.scaler = self.step.scaler
        self.amp_dtype = self.step.amp_dtype
        self.progress = Progress()
        self.tally = EpochTally()
        self.records: Optional[TrainingRecords] = None
        self.signals = StopSignals()
        self.last_save = time.monotonic()

    # --- checkpoints -------------------------------------------------------------------------
    def state(self, tally: Optional[EpochTally] = None) -> dict:
        """Everything a run needs to continue; ``tally`` for a save in the middle of an epoch.
        Every rank calls it (the random-generator states are gathered from all ranks)."""
        tally = tally or EpochTally()
        rngs = self.gather_rng_states()
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": self.progress.epoch, "step": self.progress.step,
                "best_ap": self.progress.best_ap, "evaluated": self.progress.evaluated,
                "steps_per_epoch": self.steps_per_epoch, "world_size": self.info.world_size,
                "epoch_images": tally.images, "epoch_loss_sum": tally.loss_sum,
                "epoch_seconds": tally.seconds, "epoch_skipped": list(tally.skipped),
                "rng": rngs[0], "rank_rng": rngs, "config": self.cfg.to_dict()}

    def gather_rng_states(self) -> list[dict]:
        """Every rank's random-generator states (rank 0 gets them; the others get None)."""
        if not self.info.enabled:
            return [rng_state()]
        buffer = io.BytesIO()
        torch.save(rng_state(), buffer)  # tensors travel as torch.save bytes, read back as weights only
        blobs = gather(buffer.getvalue(), self.info, self.group)
        if not self.info.is_main:
            return [None] * len(blobs)
        return [torch.load(io.BytesIO(blob), weights_only=True) for blob in blobs]

    def write(self, state: dict, path: Path) -> None:
        """Rank 0 writes ``state``; a failure stops every rank with the same WriteError."""
        error, failure = None, None
        if self.info.is_main:
            try:
                save_checkpoint(state, path)
                self.last_save = time.monotonic()
            except WriteError as err:
                error, failure = err, (err.errno, err.strerror)
        failure = broadcast(failure, self.info, self.group)
        if error is not None:
            raise error
        if failure is not None:
            raise WriteError(path, OSError(*failure))

    def restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        saved_cfg = config_from_dict(ckpt["config"], source=f"{path} (saved config)")
        changed = sorted(k for k, v in self.cfg.to_dict().items() if ckpt["config"].get(k) != v)
        main = self.info.is_main
        if changed and main:
            log.warning("resuming %s with changed config keys: %s", path, ", ".join(changed))
        if saved_cfg.num_ssd_boxes != self.cfg.num_ssd_boxes:
            raise ValueError(f"{path} was trained with {saved_cfg.num_ssd_boxes} default boxes, "
                             f"the config gives {self.cfg.num_ssd_boxes}")
        if ckpt["steps_per_epoch"] != self.steps_per_epoch and main:
            log.warning("%s: %d steps per epoch then, %d now: the schedule position moves",
                        path, ckpt["steps_per_epoch"], self.steps_per_epoch)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        rank_rng = ckpt.get("rank_rng") or []
        set_rng_state(rank_rng[self.info.rank] if len(rank_rng) == self.info.world_size else ckpt["rng"])
        self.progress = Progress(ckpt["epoch"], ckpt["step"], ckpt["best_ap"], ckpt.get("evaluated", ckpt["epoch"]))
        images = ckpt.get("epoch_images", 0)
        self.tally = EpochTally(images, ckpt.get("epoch_loss_sum", 0.0), ckpt.get("epoch_seconds", 0.0),
                                list(ckpt.get("epoch_skipped", [])))
        steps_done = images // (self.cfg.batch_size * self.info.world_size)
        rest = images - steps_done * self.cfg.batch_size * self.info.world_size
        if main and rest:
            log.warning("%s stopped after %d images of epoch %d, which %d device(s) x batch %d do not divide: "
                        "the last %d are seen again", path, images, self.progress.epoch + 1, self.info.world_size,
                        self.cfg.batch_size, rest)
        if main:
            where = (f"epoch {self.progress.epoch + 1} after step {steps_done} of {self.steps_per_epoch}" if images
                     else f"the end of epoch {self.progress.epoch}")
            again = f" (torchrun restart {self.info.restart})" if self.info.restart else ""
            log.info("resuming %s at %s, step %d in all%s", path, where, self.progress.step, again)

    # --- agreeing between ranks --------------------------------------------------------------
    def agree(self, *, skipped: int = 0) -> tuple[Optional[int], bool, int]:
        """After a step: (the stop signal any rank received, whether rank 0's clock asks for a
        save, images skipped by all ranks in that step), the same on every rank."""
        minutes = self.cfg.save_checkpoint_minutes
        clock_due = self.info.is_main and minutes > 0 and time.monotonic() - self.last_save >= 60 * minutes
        received = self.signals.received
        terms, ints, saves, skips = sum_ints(
            [received == signal.SIGTERM, received == signal.SIGINT, clock_due, skipped], self.info, self.group)
        stop = signal.SIGTERM if terms else signal.SIGINT if ints else None
        return stop, saves > 0, skips

    # --- the loop ------------------------------------------------------------------------------
    def fit(self, plan: Plan, epochs: Optional[int]) -> dict:
        cfg, info = self.cfg, self.info
        if plan.resume:
            self.restore(plan.resume)
        if info.is_main:
            if plan.clear:
                self.folder.clear(overwrite=plan.overwrite)
            self.folder.remove_stale_temporaries()
            write_bytes(self.out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
            self.records = TrainingRecords(self.out_dir, resume=bool(plan.resume), purge_step=self.progress.step)
            background = self.train_set.background_images
            log.info("training %s on %s: %d images%s, %d steps/epoch x %d epochs, batch %d x %d device(s), %s",
                     cfg.backbone, self.device, len(self.train_set),
                     f" ({background} background)" if background else "", self.steps_per_epoch, cfg.epoch_size,
                     cfg.batch_size, info.world_size, self.amp_dtype or "fp32")
        stop = cfg.epoch_size if epochs is None else min(cfg.epoch_size, self.progress.epoch + epochs)
        self.metrics = None
        self.last_save = time.monotonic()
        try:
            with self.signals:
                if self.tally.images == 0 and self.eval_due(self.progress.epoch) \
                        and self.progress.evaluated < self.progress.epoch:
                    self.evaluate_epoch(self.progress.epoch)  # stopped between the epoch's end and its evaluation
                epochs_bar = tqdm(total=cfg.epoch_size, initial=self.progress.epoch, desc="epochs",
                                  disable=not self.show_progress)
                while self.progress.epoch < stop:
                    self.train_epoch(self.progress.epoch)
                    epochs_bar.update(1)
                    signum, _, _ = self.agree()
                    if signum is not None and self.progress.epoch < stop:
                        self.interrupted(signum, f"at the end of epoch {self.progress.epoch}")
                epochs_bar.close()
        finally:
            if self.records:
                self.records.close()
        best = self.folder.best
        return {"epochs": self.progress.epoch, "last": str(self.folder.last),
                "best": str(best) if self.progress.best_ap >= 0 and best.exists() else None,
                "best_ap": self.progress.best_ap if self.progress.best_ap >= 0 else None, "metrics": self.metrics}

    def interrupted(self, signum: int, where: str) -> None:
        last = self.folder.last
        message = (f"stopped by {signal_name(signum)} {where} (step {self.progress.step} in all); "
                   f"the run continues from {last} with --resume auto (or --resume {last})")
        raise TrainingInterrupted(signum, message, str(last))

    def eval_due(self, epoch: int) -> bool:
        cfg = self.cfg
        return (cfg.eval_while_train and epoch >= max(1, cfg.eval_start_epoch)
                and ((epoch - cfg.eval_start_epoch) % cfg.eval_interval == 0 or epoch == cfg.epoch_size))

    def train_epoch(self, epoch: int) -> None:
        """One pass over this rank's part of the data (or what is left of it after a resume),
        then the epoch's checkpoint, records and evaluation."""
        cfg, info, tally = self.cfg, self.info, self.tally
        first = tally.images // (cfg.batch_size * info.world_size)  # steps done before a resume
        self.loader.sampler.set_epoch(epoch, start=first * cfg.batch_size)
        set_train_mode(self.model, freeze_bn=cfg.freeze_bn)
        loss_sum = torch.full((), tally.loss_sum if info.is_main else 0.0, device=self.device)
        pending = torch.zeros((), device=self.device)  # losses since the last finiteness check
        since, skipped_here = 0, list(tally.skipped) if info.is_main else []
        skipped_total = len(tally.skipped)
        budget = cfg.max_unreadable_share * self.epoch_images
        start = interval_start = time.perf_counter()
        steps = tqdm(self.loader, desc=f"epoch {epoch + 1}", leave=False, disable=not self.show_progress,
                     initial=first, total=self.steps_per_epoch)
        signum = None
        for done, batch in enumerate(steps, start=first + 1):
            batch = batch_to_device(batch, self.device, cfg)  # the device backend decodes and augments here
            lr = float(self.schedule[min(self.progress.step, len(self.schedule) - 1)])
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss = self.step(batch)
            pending += loss
            since += 1
            self.progress.step += 1
            skipped_here += [self.train_set.index.file_names[i].as_py() for i in batch.skipped.tolist()]
            signum, clock_due, skipped = self.agree(skipped=len(batch.skipped))
            skipped_total += skipped
            if skipped_total > budget:
                self.too_many_unreadable(epoch, skipped_here, skipped_total)
            if done % cfg.log_interval == 0 or done == self.steps_per_epoch:
                mean = self.check_finite(pending, steps_since=since, epoch=epoch)
                loss_sum += pending
                pending.zero_()
                steps.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.5f}")
                if self.records:
                    self.records.step(self.progress.step, loss=mean, lr=lr)
                if info.is_main and not self.show_progress:  # logs, CI, nohup: a line instead of the bar
                    now = time.perf_counter()
                    eta = (now - start) / (done - first) * (self.steps_per_epoch - done)
                    log.info("epoch %d/%d step %d/%d: loss %.4f, lr %.5f, %.1f img/s, eta %s", epoch + 1,
                             cfg.epoch_size, done, self.steps_per_epoch, mean, lr,
                             since * cfg.batch_size * info.world_size / (now - interval_start),
                             datetime.timedelta(seconds=round(eta)))
                    interval_start = now
                since = 0
            if done == self.steps_per_epoch:
                break
            steps_due = cfg.save_checkpoint_steps > 0 and self.progress.step % cfg.save_checkpoint_steps == 0
            if signum is not None or clock_due or steps_due:
                self.check_finite(pending, steps_since=since, epoch=epoch)
                sums = all_reduce_sum(torch.stack([loss_sum, pending]), info)
                names = self.all_skipped(skipped_here, skipped_total)
                saved = EpochTally(done * cfg.batch_size * info.world_size, float(sums.sum()),
                                   tally.seconds + time.perf_counter() - start, names)
                self.write(self.state(saved), self.folder.last)
                if signum is not None:
                    self.interrupted(signum, f"in epoch {epoch + 1} after step {done} of {self.steps_per_epoch}")
        steps.close()
        seconds = tally.seconds + time.perf_counter() - start
        loss = float(all_reduce_sum(loss_sum, info)) / (info.world_size * self.steps_per_epoch)
        names = self.all_skipped(skipped_here, skipped_total)
        self.tally = EpochTally()
        self.finish_epoch(epoch, loss=loss, seconds=seconds, skipped=names, stopping=signum is not None)
        if signum is not None:
            self.interrupted(signum, f"at the end of epoch {epoch + 1}")

    def finish_epoch(self, epoch: int, *, loss: float, seconds: float, skipped: list[str], stopping: bool) -> None:
        """last.pt, the epoch's records and log line, the evaluation when due, epoch_NNNN.pt."""
        cfg, info = self.cfg, self.info
        self.progress.epoch = epoch + 1
        self.write(self.state(), self.folder.last)
        lr = float(self.schedule[self.progress.step - 1])
        if info.is_main:
            self.records.epoch(epoch + 1, loss=loss, lr=lr, images_per_s=self.epoch_images / seconds,
                               seconds=seconds)
            log.info("epoch %d/%d: loss %.4f, lr %.5f, %.1f img/s", epoch + 1, cfg.epoch_size, loss, lr,
                     self.epoch_images / seconds)
            if skipped:
                log.warning("epoch %d: %d of %d images could not be decoded and were skipped: %s", epoch + 1,
                            len(skipped), self.epoch_images, ", ".join(sorted(set(skipped))))
        if self.eval_due(epoch + 1) and not stopping:
            self.evaluate_epoch(epoch + 1)
        if info.is_main:
            self.folder.keep_epoch(epoch + 1, cfg.keep_checkpoint_max)

    def evaluate_epoch(self, epoch: int) -> None:
        """COCO mAP on the val split (rank 0; a SIGTERM or Ctrl-C ends it at once, and the run
        evaluates again when resumed); a new best is kept as best.pt."""
        outcome = None
        if self.info.is_main:
            try:
                with self.signals.interrupting():
                    metrics = evaluate(self.model, self.val_set, self.cfg, device=self.device,
                                       progress=self.show_progress)
                outcome = {"metrics": metrics}
            except StopNow:
                outcome = {"stopped": self.signals.received}
        outcome = broadcast(outcome, self.info, self.group)
        if "stopped" in outcome:
            self.interrupted(outcome["stopped"], f"while evaluating epoch {epoch}, which is evaluated again "
                                                 "when the run continues")
        metrics = outcome["metrics"]
        improved = metrics["AP"] > self.progress.best_ap
        if improved:
            self.progress.best_ap = metrics["AP"]
        self.progress.evaluated = epoch
        self.metrics = metrics
        self.write({**self.state(), "metrics": metrics}, self.folder.last)
        if self.info.is_main:
            if improved:
                self.folder.keep_best()
            self.folder.keep_epoch(epoch, self.cfg.keep_checkpoint_max)  # now with the evaluation in it
            self.records.metrics(epoch, metrics)
            if self.show_progress:
                tqdm.write(format_table(metrics))
            log.info("epoch %d: AP %.4f, AP50 %.4f%s", epoch, metrics["AP"], metrics["AP50"],
                     " (best so far)" if improved else f" (best {self.progress.best_ap:.4f})")

    def all_skipped(self, skipped_here: list[str], total: int) -> list[str]:
        """File names of the epoch's skipped images, from every rank (a collective: all ranks
        call it, and they agree on ``total``)."""
        if total == 0:
            return []
        return [name for names in gather(skipped_here, self.info, self.group) for name in names]

    def too_many_unreadable(self, epoch: int, skipped_here: list[str], total: int) -> None:
        names = sorted(set(self.all_skipped(skipped_here, total)))
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise UnreadableImagesError(
            f"{self.cfg.data_dir}: {total} training images could not be decoded in epoch {epoch + 1}, more than "
            f"max_unreadable_share {self.cfg.max_unreadable_share} of its {self.epoch_images}: {shown}. "
            f"Check the data (ssdzoo prepare verify DIR for a packed split); the last checkpoint is "
            f"{self.folder.last if self.folder.last.exists() else 'not written yet'}")

    def check_finite(self, pending: torch.Tensor, *, steps_since: int, epoch: int) -> float:
        """Mean global loss of the last steps; stops every rank together if it is not finite."""
        mean = float(all_reduce_sum(pending, self.info)) / (self.info.world_size * max(1, steps_since))
        if not math.isfinite(mean):
            last = self.folder.last
            kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written"
            raise NonFiniteLossError(
                f"the loss became {mean} in epoch {epoch + 1} (step {self.progress.step}); training stopped "
                f"and {kept}. Try a lower lr, a longer warmup, or grad_clip.")
        return mean
