"""SIGTERM and Ctrl-C during training: finish the step, save, stop; never die mid-write.

Clusters preempt a job with SIGTERM and follow with SIGKILL a little later (SLURM's KillWait,
torchrun's --shutdown_timeout: 30 s by default). ``StopSignals`` turns the first SIGTERM or
SIGINT into a request that the training loop reads after each step; the loop then agrees on the
step with the other ranks, writes a checkpoint and raises ``TrainingInterrupted``. The same
signal arriving again within ``REPEAT_WINDOW_S`` is the same request (torchrun relays the
signal it gets to its workers, schedulers signal every process of a job); a later Ctrl-C stops
at once (KeyboardInterrupt), a later SIGTERM changes nothing.

Long waits that can be redone, such as evaluation during training, run inside
``signals.interrupting()``: there a request raises ``StopNow`` at once, so that the checkpoint
is written before the scheduler's SIGKILL.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Iterator, Optional

SIGNALS = (signal.SIGTERM, signal.SIGINT)
REPEAT_WINDOW_S = 2.0


class StopNow(Exception):
    """A stop was requested inside ``StopSignals.interrupting()``."""


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after writing a checkpoint; resume it with --resume."""

    def __init__(self, signum: int, message: str, checkpoint: Optional[str]):
        super().__init__(message)
        self.signum, self.checkpoint = signum, checkpoint

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by that signal


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopSignals:
    """Installs the handlers while active (main thread only; elsewhere it only reports None)."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._first_at = 0.0
        self._interrupting = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        now = time.monotonic()
        if self.received is None:
            self.received, self._first_at = signum, now
            if self._interrupting:
                raise StopNow(signal_name(signum))
        elif signum == signal.SIGINT and now - self._first_at > REPEAT_WINDOW_S:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def interrupting(self) -> Iterator[None]:
        """A block that a stop request ends at once with ``StopNow``."""
        self._interrupting = True  # first: a signal from here on raises in the handler
        if self.received is not None:
            self._interrupting = False
            raise StopNow(signal_name(self.received))
        try:
            yield
        finally:
            self._interrupting = False
