"""Target encoding and post-processing, ssdzoo against the seed's numpy algorithms: a table and JSON.

    PYTHONPATH=src python benchmarks/bench_box_ops.py [--repeats 11] [--json runs/bench_box_ops.json]

Both sides run in this one process on the same inputs, interleaved; see ssdzoo.bench.box_ops.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ssdzoo.atomic import write_json
from ssdzoo.bench.box_ops import POSTPROCESS_CASES, bench_encode, bench_postprocess, machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="timed runs of each side (median reported)")
    parser.add_argument("--batch", type=int, default=16,
                        help="images per post-processing call in the batched run of the few-candidate cases")
    parser.add_argument("--json", type=Path, default=Path("runs/bench_box_ops.json"), help="where to write the figures")
    parser.add_argument("--cold-allocator", action="store_true",
                        help="skip the allocator warm-up (see ssdzoo.bench.box_ops)")
    args = parser.parse_args(argv)
    warm = not args.cold_allocator

    few = tuple(case for case in POSTPROCESS_CASES if case[0] in ("sparse", "clustered"))
    results = {
        "machine": machine(),
        "encode": bench_encode(repeats=args.repeats, warm_allocator=warm),
        "postprocess": bench_postprocess(repeats=max(3, args.repeats // 2), warm_allocator=warm),
        "postprocess_batched": bench_postprocess(cases=few, batch=args.batch, repeats=args.repeats,
                                                 warm_allocator=warm),
    }
    print(format_table(results))
    write_json(args.json, results, indent=2)
    print(f"wrote {args.json}")
    return 0


def format_table(results: dict) -> str:
    """One line per (benchmark, case, thread count): ms per image of each side and the ratio."""
    encode = results["encode"]
    rows = [(f"encode {encode['batch']} img x {encode['boxes_per_image']} boxes, {encode['anchors']} anchors",
             encode["labels_identical"], encode["timings"])]
    for key in ("postprocess", "postprocess_batched"):
        block = results[key]
        for name, case in block["cases"].items():
            rows.append((f"postprocess {name} (batch {block['batch']}, {case['candidates_per_image']:.0f} cand/img)",
                         case["identical"], case["timings"]))
    lines = [f"{'benchmark':<52} {'threads':>8} {'seed ms/img':>12} {'ssdzoo ms/img':>14} {'speedup':>8}  same"]
    for label, identical, timings in rows:
        for threads, t in timings.items():
            lines.append(f"{label:<52} {threads.split('_')[0]:>8} {t['seed_ms_per_image']:>12.4f} "
                         f"{t['ssdzoo_ms_per_image']:>14.4f} {t['speedup']:>7.1f}x  {identical}")
    machine_info = results["machine"]
    lines.append(f"({machine_info['cpu']}, {machine_info['cores']} threads by default, torch {machine_info['torch']}, "
                 f"numpy {machine_info['numpy']}; allocator warmed: {results['encode']['warm_allocator']})")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
