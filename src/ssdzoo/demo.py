"""`ssdzoo demo`: the whole job on the embedded synthetic dataset, on this machine, no download.

    synthesize (ssdzoo synth) -> pack (ssdzoo prepare) -> train configs/demo.yaml -> evaluate
    -> predict a few validation images
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from .config import load_config
from .data import load_dataset, make_synthetic_coco, prepare_coco
from .engine.distributed import DistInfo, resolve_device
from .engine.evaluate import evaluate, format_table, write_metrics_json
from .engine.train import train
from .inference import Predictor
from .model import build_model
from .predict import collect_images, run_predict

log = logging.getLogger(__name__)


def run_demo(out_dir: str | Path = "runs/demo", *, seed: int = 0, overrides: Sequence[str] = (),
             num_predictions: int = 8, picture_score: float = 0.5, overwrite: bool = False) -> dict:
    """Run the demo into ``out_dir``; returns the evaluation numbers and where the outputs are.
    An interrupted demo's training continues where it stopped (a finished one is evaluated
    again); ``overwrite`` trains anew."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    raw, packed = out_dir / "synthetic", out_dir / "packed"
    if not (raw / "annotations" / "instances_val2017.json").exists():
        log.info("writing the synthetic dataset (seed %d) to %s", seed, raw)
        make_synthetic_coco(raw, seed=seed, workers=2, overwrite=True)  # complete or absent
    if not (packed / "val2017" / "manifest.json").exists():
        prepare_coco(raw, packed, workers=2, overwrite=True)

    cfg = load_config("demo", [f"data_dir={packed}", f"ckpt_save_dir={out_dir}", *overrides])
    summary = train(cfg, resume=None if overwrite else "auto", overwrite=overwrite)
    checkpoint = summary["best"] or summary["last"]

    device = resolve_device(cfg.device, DistInfo())
    model = build_model(cfg, weights=checkpoint).to(device)
    stats = evaluate(model, load_dataset(cfg.data_dir, cfg, train=False), cfg, device=device,
                     progress=sys.stderr.isatty())
    metrics_path = write_metrics_json(stats, out_dir / "metrics.json", config="demo", checkpoint=checkpoint)

    images = collect_images([raw / "val2017"])[:num_predictions]
    predictor = Predictor(cfg, model, device=str(device))
    predictions = run_predict(predictor, images, out_dir / "predictions", draw_score=picture_score)
    minutes = (time.perf_counter() - start) / 60
    print(format_table(stats))
    print(f"\ndemo finished in {minutes:.1f} min: AP {stats['AP']:.3f}, AP50 {stats['AP50']:.3f}")
    print(f"  metrics       {metrics_path}")
    print(f"  curves        {out_dir / 'curves.png'}")
    print(f"  checkpoint    {checkpoint}")
    print(f"  predictions   {predictions.json_path.parent}/ ({len(predictions.written)} images, "
          f"boxes drawn over {picture_score})")
    return {"stats": stats, "checkpoint": checkpoint, "metrics": str(metrics_path), "minutes": minutes,
            "predictions": [str(p) for p in predictions.written]}

