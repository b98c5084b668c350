"""Timing helpers shared by the benchmarks: interleaved rounds, device synchronization, medians.

Variants run in turn within each round (a, b, c, a, b, c, ...), so that the load of a shared
machine, which drifts over seconds, slows every variant alike: the ratios are the figures to
quote. On CUDA each call is closed by a synchronization, so a call's time is its kernels' time.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable, Iterator, Mapping, NamedTuple, Optional

import torch


class Timing(NamedTuple):
    """Seconds of each timed call of one variant."""

    seconds: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.seconds)

    @property
    def min_ms(self) -> float:
        return 1e3 * min(self.seconds)

    def to_dict(self) -> dict:
        return {"median_ms": round(self.median_ms, 3), "min_ms": round(self.min_ms, 3),
                "calls": len(self.seconds)}


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What waits for the device's queued work: CUDA's synchronize, nothing on the CPU."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def interleaved(calls: Mapping[str, Callable[[], object]], *, rounds: int, calls_per_round: int,
                warmup: int, sync: Callable[[], None] = lambda: None) -> dict[str, Timing]:
    """Each variant called ``warmup`` times, then ``rounds`` rounds of ``calls_per_round``
    consecutive calls per variant, variants in turn; the time of every timed call."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
        sync()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            for _ in range(calls_per_round):
                start = time.perf_counter()
                fn()
                sync()
                seconds[name].append(time.perf_counter() - start)
    return {name: Timing(tuple(times)) for name, times in seconds.items()}


@contextlib.contextmanager
def torch_threads(count: Optional[int]) -> Iterator[int]:
    """torch's intra-op thread count set for the block (None: leave it), restored after."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
