"""`ssdzoo` with one fault injected, for the torchrun tests:

    torchrun ... tests/fault_runner.py FAULT train CONFIG key=value ...

FAULT is "none"; "sigterm-agent@STEP": in training step STEP, rank 0 sends SIGTERM to its
torchrun agent, as a scheduler preempting the job does (the agent relays it to every worker);
"sigkill-rank1@STEP": in step STEP, rank 1 kills itself with SIGKILL; "error-rank1@STEP": in step
STEP, rank 1 meets a data error (ValueError), as a config or data fault found mid-run;
"enospc@STEP": from step STEP on, rank 0's checkpoint writes find the disk full (ENOSPC). Steps
count from 1 in the process; a fault fires on torchrun's first attempt only
(TORCHELASTIC_RESTART_COUNT 0).
"""

from __future__ import annotations

import errno
import os
import signal
import sys


def inject(fault: str) -> None:
    if fault == "none" or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    kind, step = fault.split("@")
    rank = int(os.environ["RANK"])
    from ssdzoo.engine import train as train_module

    original, calls = train_module.TrainStep.__call__, []

    def step_with_fault(self, batch):
        calls.append(1)
        if len(calls) == int(step):
            if kind == "sigterm-agent" and rank == 0:
                os.kill(os.getppid(), signal.SIGTERM)
            elif kind == "sigkill-rank1" and rank == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            elif kind == "error-rank1" and rank == 1:
                raise ValueError("injected data error on rank 1")
            elif kind == "enospc" and rank == 0:
                from ssdzoo.engine import checkpoint

                def full_disk(path, *args, **kwargs):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

                checkpoint.open = full_disk
        return original(self, batch)

    train_module.TrainStep.__call__ = step_with_fault


if __name__ == "__main__":
    inject(sys.argv[1])
    from ssdzoo.cli import main

    sys.exit(main(sys.argv[2:]))
