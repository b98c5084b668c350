"""`ssdzoo predict` throughput over a folder, end to end, against a plain loop doing the same work.

    plain loop   one process: for each batch, decode and resize its files, network + NMS, draw
                 and save each picture; detections.json at the end (what predict did before it
                 ran in parallel)
    predict      ``ssdzoo.predict.run_predict`` with predict's default workers (or ``workers``):
                 loader processes decode and resize ahead of the network, as many more draw and
                 save beside it, results streamed to JSON Lines

Both with and without drawing, same predictor, batch size and thread count; the variants run
in turn within each round (one pass over the folder each), and each one's fastest round counts.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Optional

from ..atomic import write_json
from ..engine.evaluate import coco_results
from ..inference import ImageReadError, Predictor, load_image, preprocess
from ..predict import collect_inputs, default_workers, image_ids, run_predict, save_image
from ..visualize import DEFAULT_DRAW_SCORE, draw_detections

log = logging.getLogger(__name__)


def plain_loop(predictor: Predictor, folder: str | Path, out_dir: Path, *, batch_size: int, draw: bool,
               draw_score: float = DEFAULT_DRAW_SCORE) -> int:
    """The one-process loop over the folder's images; how many were predicted."""
    files = [f for f in collect_inputs([folder]) if f.kind == "image"]
    ids = image_ids([f.path for f in files])
    rows, count = [], 0
    for start in range(0, len(files), batch_size):
        chunk, arrays = [], []
        for file, image_id in zip(files[start:start + batch_size], ids[start:start + batch_size]):
            try:
                arrays.append(load_image(file.path))
                chunk.append((file, image_id))
            except ImageReadError:
                continue
        batch, image_hw = preprocess(arrays, predictor.cfg)
        detections = predictor.predict_batch(batch, image_hw)
        rows += coco_results(detections, [i for _, i in chunk], file_names=[f.name for f, _ in chunk])
        if draw:
            for (file, _), array, dets in zip(chunk, arrays, detections):
                save_image(draw_detections(array, dets, predictor.cfg.classes, min_score=draw_score),
                           out_dir / file.name)
        count += len(chunk)
    write_json(out_dir / "detections.json", rows, indent=None, durable=False)
    return count


def bench_predict(predictor: Predictor, folder: str | Path, *, batch_size: int = 8, workers: Optional[int] = None,
                  rounds: int = 2) -> dict:
    """images/s of the plain loop and of run_predict over ``folder``, drawing and not."""
    drawing = default_workers(predictor, draw=True) if workers is None else workers
    no_draw = default_workers(predictor, draw=False) if workers is None else workers
    plain_drawing, predict_drawing = "plain loop, drawing", f"predict ({_workers(drawing)}), drawing"
    plain_no_draw, predict_no_draw = "plain loop, --no-draw", f"predict ({_workers(no_draw)}), --no-draw"
    variants = {
        plain_drawing: lambda out: plain_loop(predictor, folder, out, batch_size=batch_size, draw=True),
        predict_drawing: lambda out: run_predict(
            predictor, [folder], out, batch_size=batch_size, workers=drawing, progress=False).images,
        plain_no_draw: lambda out: plain_loop(predictor, folder, out, batch_size=batch_size, draw=False),
        predict_no_draw: lambda out: run_predict(
            predictor, [folder], out, batch_size=batch_size, workers=no_draw, draw=False, progress=False).images,
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    images = 0
    for round_index in range(rounds):
        for name, run in variants.items():
            with tempfile.TemporaryDirectory(prefix="ssdzoo-bench-predict-") as tmp:
                start = time.perf_counter()
                images = run(Path(tmp))
                seconds[name].append(time.perf_counter() - start)
            log.info("predict throughput, round %d: %s %.1f images/s", round_index + 1, name,
                     images / seconds[name][-1])
    result = {"folder": str(folder), "images": images, "batch": batch_size,
              "workers": {"drawing": drawing, "no_draw": no_draw}, "rounds": rounds,
              "variants": {name: {"img_per_s": round(images / min(s), 2), "seconds": [round(x, 2) for x in s]}
                           for name, s in seconds.items()}}
    rates = {name: v["img_per_s"] for name, v in result["variants"].items()}
    result["speedup_drawing"] = round(rates[predict_drawing] / rates[plain_drawing], 3)
    result["speedup_no_draw"] = round(rates[predict_no_draw] / rates[plain_no_draw], 3)
    return result


def _workers(n: int) -> str:
    return f"{n} worker{'' if n == 1 else 's'}"
