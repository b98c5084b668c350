"""What a training run keeps in its ``ckpt_save_dir``, and the rules that protect it.

    last.pt              the latest state: written after every epoch, at a periodic mid-epoch
                         save, and when a SIGTERM / Ctrl-C stops the run
    best.pt              the best validation AP so far (eval_while_train)
    epoch_0001.pt ...    the state after each epoch, the newest keep_checkpoint_max of them
    config.yaml, metrics.csv, curves.png, tensorboard/   the records (engine/records.py)

A new run never writes into a folder that holds another run's checkpoints: it stops before
writing anything and says how to continue that run (--resume), replace it (--overwrite) or go
elsewhere. ``--resume auto`` continues from the latest checkpoint that loads, if there is one.
Per-epoch files are hard links to the last.pt they were taken from where the filesystem allows
(no extra space until last.pt moves on), copies elsewhere.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..atomic import atomic_path, temporary_path
from .checkpoint import load_checkpoint

log = logging.getLogger(__name__)

LAST, BEST = "last.pt", "best.pt"
EPOCH_NAME = "epoch_{:04d}.pt"
_EPOCH_FILE = re.compile(r"epoch_(\d+)\.pt")
RECORDS = ("config.yaml", "metrics.csv", "curves.png", "tensorboard")  # engine/records.py's
EVALUATION = "metrics.json"  # what `ssdzoo eval --json` and the demo write beside best.pt
# atomic.temporary_path's names for the files above
_TEMPORARY = re.compile(r"\.(last\.pt|best\.pt|epoch_\d+\.pt|config\.yaml|metrics\.csv|curves\.png)\.(\d+)\.[0-9a-f]+\.tmp")


class RunFolderError(ValueError):
    """A training run that would overwrite, or cannot find, another run's checkpoints."""


@dataclass(frozen=True)
class Plan:
    """What ``RunFolder.plan`` decided: the checkpoint to resume (None: a new run), and what is
    removed before the run writes: the old run (--overwrite), or the records a run that saved no
    checkpoint left behind."""

    resume: Optional[Path] = None
    clear: bool = False
    overwrite: bool = False


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    def epoch_path(self, epoch: int) -> Path:
        return self.path / EPOCH_NAME.format(epoch)

    def epoch_checkpoints(self) -> list[tuple[int, Path]]:
        """(epoch, path) of the per-epoch checkpoints, oldest first."""
        if not self.path.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.path.iterdir() if (m := _EPOCH_FILE.fullmatch(p.name))]
        return sorted(found)

    def checkpoints(self) -> list[Path]:
        return [p for p in (self.last, self.best) if p.is_file()] + [p for _, p in self.epoch_checkpoints()]

    # --- before a run starts ---------------------------------------------------------------
    def plan(self, resume: Optional[str | Path], *, overwrite: bool = False) -> Plan:
        """Decide how a run may use this folder; raise RunFolderError if it may not.

        ``resume``: None (a new run), "auto" (the latest checkpoint here, else a new run) or a
        checkpoint path (continued in this folder, which must not hold another run's files).
        """
        existing = self.checkpoints()
        if overwrite:
            if resume is not None:
                raise RunFolderError("--overwrite starts a new run: it cannot be combined with --resume")
            return Plan(clear=True, overwrite=True)
        if resume == "auto":
            latest = self.latest()
            if latest is None and existing:
                raise RunFolderError(
                    f"{self.path} holds {_names(existing)} but no last.pt or epoch checkpoint that loads: "
                    f"continue from one of them with --resume FILE, replace the run with --overwrite, "
                    f"or pick another ckpt_save_dir")
            if latest is not None:
                return Plan(resume=latest)
            # nothing to continue: a new run, whose records replace a run killed before its first save
            return Plan(clear=any((self.path / name).exists() for name in RECORDS))
        if resume is not None:
            resume = Path(resume)
            if existing and resume.resolve().parent != self.path.resolve():
                raise RunFolderError(
                    f"{self.path} holds another run's checkpoints ({_names(existing)}): continuing {resume} "
                    f"there would mix two runs; pick another ckpt_save_dir, or --resume in {resume.parent}")
            return Plan(resume=resume)
        if existing:
            raise RunFolderError(
                f"{self.path} already holds a run ({_names(existing)}): continue it with --resume auto "
                f"(or --resume {self.last}), replace it with --overwrite, or pick another ckpt_save_dir")
        return Plan(clear=any((self.path / name).exists() for name in RECORDS))

    def latest(self) -> Optional[Path]:
        """The newest checkpoint that loads: last.pt, else the per-epoch files newest first."""
        candidates = [self.last] if self.last.is_file() else []
        candidates += [p for _, p in reversed(self.epoch_checkpoints())]
        for path in candidates:
            try:
                load_checkpoint(path)
            except ValueError as err:
                log.warning("%s; trying an older checkpoint", err)
                continue
            return path
        return None

    def clear(self, *, overwrite: bool) -> None:
        """Remove a run's checkpoints and records, and with ``overwrite`` its evaluation too;
        nothing else in the folder is touched."""
        names = [*RECORDS, EVALUATION] if overwrite else RECORDS
        removed = []
        for path in [*self.checkpoints(), *(self.path / name for name in names)]:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            removed.append(path.name)
        if removed:
            log.info("%s: removed the previous run's %s", self.path, ", ".join(removed))

    def remove_stale_temporaries(self) -> None:
        """Temporary files an earlier run left (a writer killed mid-write; never read as
        checkpoints), unless the process that named them still runs."""
        if not self.path.is_dir():
            return
        for path in self.path.iterdir():
            match = _TEMPORARY.fullmatch(path.name)
            if match and not _running(int(match.group(2))):
                log.info("removing %s, a temporary file an earlier run left", path)
                path.unlink(missing_ok=True)

    # --- while it runs -----------------------------------------------------------------------
    def keep_epoch(self, epoch: int, keep: int) -> None:
        """Keep last.pt as epoch_NNNN.pt, then remove the oldest beyond ``keep``."""
        if keep > 0:
            _link_or_copy(self.last, self.epoch_path(epoch))
        kept = self.epoch_checkpoints()
        for _, old in kept[:max(0, len(kept) - keep)]:
            old.unlink(missing_ok=True)

    def keep_best(self) -> None:
        """Keep last.pt as best.pt."""
        _link_or_copy(self.last, self.best)


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` becomes ``source``'s content at once: a hard link renamed into place, or where
    the filesystem has no hard links, an atomic copy."""
    if target.exists() and os.path.samefile(source, target):
        return  # already this file (an epoch kept again after its evaluation rewrote nothing since)
    tmp = temporary_path(target)
    try:
        os.link(source, tmp)
        # a rename onto a hard link of the same file does nothing and leaves the name it came
        # from (POSIX): the unlink below removes the temporary in every case
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        with atomic_path(target) as copy:
            shutil.copyfile(source, copy)
    finally:
        tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _names(paths: list[Path]) -> str:
    shown = [p.name for p in paths[:4]]
    return ", ".join(shown) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")
