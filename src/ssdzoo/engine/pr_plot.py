"""Precision-recall curves per class, from COCOeval's interpolated precision, as one PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from .evaluate import CocoEvaluation

_IOU_CURVES = ((0, "IoU 0.50", "-"), (5, "IoU 0.75", "--"))  # indices into COCOeval's 0.50:0.05:0.95


def plot_pr_curves(evaluation: CocoEvaluation, path: str | Path, *, columns: int = 4) -> Path:
    """One panel per class (precision against recall at IoU 0.5 and 0.75, AP50 and AP in its
    title) after a panel of the mean over classes; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = evaluation.class_names
    panels = ["all classes", *names]
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.7 * rows), squeeze=False)
    recall, precision = evaluation.recall, evaluation.precision
    for k, (ax, title) in enumerate(zip(axes.flat, panels)):
        if k == 0:
            valid = (precision > -1).all(axis=(0, 1))
            curves = precision[:, :, valid].mean(axis=2) if valid.any() else None
            label = f"AP50 {_text(evaluation.stats.get('AP50'))}, AP {_text(evaluation.stats.get('AP'))}"
        else:
            curves = precision[:, :, k - 1] if (precision[:, :, k - 1] > -1).all() else None
            row = evaluation.per_class[title]
            label = f"AP50 {_text(row['AP50'])}, AP {_text(row['AP'])}, {row['boxes']} boxes"
        if curves is None:
            ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes)
        else:
            for t, name, style in _IOU_CURVES:
                ax.plot(recall, np.clip(curves[t], 0, 1), style, label=name)
        ax.set_title(f"{title}\n{label}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, loc="lower left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
    finally:
        plt.close(fig)
    return path


def _text(value) -> str:
    return f"{value:.3f}" if value is not None else "-"
