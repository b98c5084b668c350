"""Worker processes that end with the process that started them.

A forked ``ProcessPoolExecutor`` worker waits on its task pipe for ever once its parent is gone
(it holds the pipe's write end itself, so it never sees the end of it): a ``kill -9`` of
``ssdzoo prepare`` or ``ssdzoo predict`` would leave its workers running. On Linux each worker
asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere the
pool is an ordinary one.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys

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
