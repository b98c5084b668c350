"""What a training run leaves behind besides checkpoints: a CSV of epochs, TensorBoard scalars,
and a PNG of the training curves.

The CSV and PNG are rewritten whole through atomic writes; TensorBoard's event files are
append-only logs (a resumed run purges the events after its checkpoint's step). A write that
fails (full disk, I/O error) raises WriteError naming the file or folder.
"""

from __future__ import annotations

import contextlib
import csv
import logging
from pathlib import Path
from typing import Iterator, Optional

from ..atomic import WriteError, atomic_path

log = logging.getLogger(__name__)

EPOCH_FIELDS = ("epoch", "loss", "lr", "images_per_s", "seconds", "AP", "AP50")


class TrainingRecords:
    """Rank 0's records of a run in ``out_dir``: metrics.csv, tensorboard/, curves.png."""

    def __init__(self, out_dir: str | Path, *, resume: bool = False, purge_step: Optional[int] = None):
        self.out_dir = Path(out_dir)
        self.csv_path = self.out_dir / "metrics.csv"
        self.tensorboard_dir = self.out_dir / "tensorboard"
        self.rows: list[dict] = []
        if resume and self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                self.rows = [dict(row) for row in csv.DictReader(f)]
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency; a broken install only loses the event files
            log.warning("tensorboard is not importable: no event files")
            return
        with self._tensorboard():
            self.writer = SummaryWriter(str(self.tensorboard_dir), purge_step=purge_step if resume else None)

    @contextlib.contextmanager
    def _tensorboard(self) -> Iterator[None]:
        try:
            yield
        except OSError as err:  # raised late, by TensorBoard's writer thread, for an earlier write
            raise WriteError(self.tensorboard_dir, err) from err

    def step(self, step: int, *, loss: float, lr: float) -> None:
        if self.writer:
            with self._tensorboard():
                self.writer.add_scalar("train/loss", loss, step)
                self.writer.add_scalar("train/lr", lr, step)

    def epoch(self, epoch: int, *, loss: float, lr: float, images_per_s: float, seconds: float,
              metrics: Optional[dict] = None) -> None:
        """One row per finished epoch; the CSV and PNG are rewritten whole, so they stay valid."""
        row = {"epoch": epoch, "loss": f"{loss:.6f}", "lr": f"{lr:.6g}",
               "images_per_s": f"{images_per_s:.2f}", "seconds": f"{seconds:.1f}", "AP": "", "AP50": ""}
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        if self.writer:
            with self._tensorboard():
                self.writer.add_scalar("epoch/loss", loss, epoch)
                self.writer.add_scalar("epoch/images_per_s", images_per_s, epoch)
        if metrics:
            self.metrics(epoch, metrics)
        else:
            self._rewrite()

    def metrics(self, epoch: int, metrics: dict) -> None:
        """The validation numbers of an epoch whose row is written."""
        for row in self.rows:
            if int(row["epoch"]) == epoch:
                row.update(AP=f"{metrics['AP']:.5f}", AP50=f"{metrics['AP50']:.5f}")
        if self.writer:
            with self._tensorboard():
                for key, value in metrics.items():
                    self.writer.add_scalar(f"val/{key}", value, epoch)
        self._rewrite()

    def _rewrite(self) -> None:
        with atomic_path(self.csv_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=EPOCH_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        if self.writer:
            with self._tensorboard():
                self.writer.flush()
        plot_curves(self.rows, self.out_dir / "curves.png")

    def close(self) -> None:
        if self.writer:
            with self._tensorboard():
                self.writer.close()


def plot_curves(rows: list[dict], path: Path) -> None:
    """``curves_figure`` as a PNG at ``path``."""
    fig = curves_figure(rows)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def curves_figure(rows: list[dict]):
    """Loss and learning rate per epoch, and validation AP / AP50 where measured (no validation
    panel when nothing was evaluated); epoch axes with whole-number ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [int(r["epoch"]) for r in rows]
    evaluated = [r for r in rows if r.get("AP")]
    if evaluated:  # a validation panel only when something was evaluated (eval_while_train)
        fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(10, 4), sharex=True)  # the same epochs
    else:
        fig, ax_loss = plt.subplots(1, 1, figsize=(5.5, 4))
    ax_loss.plot(epochs, [float(r["loss"]) for r in rows], marker="o", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_lr = ax_loss.twinx()
    ax_lr.plot(epochs, [float(r["lr"]) for r in rows], color="gray", linestyle="--", label="lr")
    ax_lr.set_ylabel("learning rate")
    ax_loss.set_title("training")
    # epochs are whole numbers: each one as a tick while they are few, else whole-number ticks
    # (with one or two points the integer locator alone falls back to ticks such as 0.96, 1.04)
    if len(set(epochs)) <= 12:
        ax_loss.set_xticks(sorted(set(epochs)))
    else:
        ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    if evaluated:
        for key in ("AP", "AP50"):
            ax_ap.plot([int(r["epoch"]) for r in evaluated], [float(r[key]) for r in evaluated], marker="o",
                       label=key)
        ax_ap.set_xlabel("epoch")
        ax_ap.set_ylim(0, 1)
        ax_ap.set_title("validation (COCO)")
        ax_ap.legend()
    fig.tight_layout()
    return fig
