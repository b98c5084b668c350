"""Worker processes that end with the process that started them.

Two kinds: ``process_pool`` (prepare, predict) and the training loader's workers
(``loader_worker_signals``, from data/dataset.py's ``seed_worker``).

A forked ``ProcessPoolExecutor`` worker waits on its task pipe for ever once its parent is gone
(it holds the pipe's write end itself, so it never sees the end of it): a ``kill -9`` of
``ssdzoo prepare`` or ``ssdzoo predict`` would leave its workers running. On Linux each worker
asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere the
pool is an ordinary one.

A loader worker ignores the SIGTERM and SIGINT that a scheduler or a terminal sends to every
process of a job (the main process stops training cleanly on them and ends its workers itself),
but it must still obey its parent: multiprocessing ends daemon children with SIGTERM when the
main process exits, then waits for them, so a worker that ignored every SIGTERM kept the main
process waiting for ever (a failed checkpoint write or a ``make_loader`` loop at module level
never exited). ``loader_worker_signals`` therefore takes SIGTERM in a thread of its own and
ends the worker when the signal comes from its parent, and ignores it from anyone else.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def process_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """``workers`` processes, forked where the platform can (they start at once and share the
    parent's read-only state), each ending when the parent does."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                                                  initializer=die_with_parent, initargs=(os.getpid(),))


def die_with_parent(parent_pid: int) -> None:
    """In a child process: be killed when ``parent_pid`` exits (Linux; no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request was in place
        os._exit(1)


def loader_worker_signals() -> None:
    """In a loader worker (its main thread, before other threads start): ignore SIGINT, and
    SIGTERM unless the parent sends it (multiprocessing's ``terminate``), which ends the worker
    at once."""
    parent_pid = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):  # not POSIX: ignore SIGTERM as before
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return
    # blocked here, so in every thread started from now on; the waiter below receives it
    # (a blocked signal is queued even while its disposition is "ignore")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_end_on_parents_sigterm, args=(parent_pid,), name="sigterm-from-parent",
                     daemon=True).start()
    # no die_with_parent here: PR_SET_PDEATHSIG fires when the parent *thread* ends, and a loader
    # may be iterated first from a thread that ends before the loader does; torch's own watchdog
    # ends a worker within seconds of the parent's death


def _end_on_parents_sigterm(parent_pid: int) -> None:
    while True:
        received = signal.sigwaitinfo({signal.SIGTERM})
        if received.si_pid == parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)  # ends like a terminated process (SIGTERM is blocked here)
