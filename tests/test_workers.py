"""Worker pools end with their parent, even when it is killed with SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ssdzoo.workers import process_pool

PARENT = textwrap.dedent("""
    import os, signal
    from ssdzoo.workers import process_pool

    def pid(_):
        return os.getpid()

    if __name__ == "__main__":
        pool = process_pool(2)
        print(" ".join(map(str, sorted(set(pool.map(pid, range(8)))))), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its entry waits to be reaped


def _square(x: int) -> int:
    return x * x


def test_a_pool_works():
    with process_pool(2) as pool:
        assert list(pool.map(_square, range(5))) == [0, 1, 4, 9, 16]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_end_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in parent.stdout.readline().split()]
    parent.wait(timeout=30)
    assert parent.returncode == -9 and pids
    deadline = time.monotonic() + 10
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, pids)), "workers outlived their SIGKILLed parent"
