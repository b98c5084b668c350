"""What the ranks' agreement after every training step costs: one CPU all-reduce of 4 integers
(stop signal, save due, images skipped) on the gloo group, median of timed calls.

    OMP_NUM_THREADS=1 PYTHONPATH=src torchrun --standalone --nproc_per_node 2 benchmarks/bench_rank_agreement.py
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.distributed as dist

from ssdzoo.engine.distributed import DistInfo, init_process_group, sum_ints


def main(calls: int = 3000) -> None:
    info = DistInfo.from_env()
    group = init_process_group(info, torch.device("cpu"))
    for _ in range(200):  # connections warm
        sum_ints([0, 0, 0, 1], info, group)
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        sum_ints([0, 0, 0, 1], info, group)
        seconds.append(time.perf_counter() - start)
    if info.is_main:
        print(f"agreement over {info.world_size} ranks: median {statistics.median(seconds) * 1e6:.0f} us, "
              f"mean {statistics.fmean(seconds) * 1e6:.0f} us per step ({calls} calls)")
    if info.enabled:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
