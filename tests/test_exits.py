"""Every way a run stops ends the process and its loader workers: a failed checkpoint write into
a full filesystem, a bug in the data path (which stops with its traceback instead of being counted
as an unreadable image), and a script that loops over ``make_loader`` at module level."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tiny import TINY_CONFIG, make_tiny_shapes

from ssdzoo.cli import main
from ssdzoo.data import PackedSplit, prepare_coco
from ssdzoo.data import dataset as dataset_module
from ssdzoo.data.dataset import InternalError
from ssdzoo.engine.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_tiny_shapes(tmp_path_factory.mktemp("shapes"))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bug_in_the_transform_stops_training_with_its_traceback(shapes, tmp_path, monkeypatch, caplog, workers):
    def broken_transform(*args, **kwargs):
        raise ValueError("injected bug")

    monkeypatch.setattr(dataset_module, "train_transform", broken_transform)  # forked workers inherit it
    with pytest.raises(InternalError, match="injected bug") as stopped:
        main(["train", str(TINY_CONFIG), f"data_dir={shapes}", f"ckpt_save_dir={tmp_path}",
              f"num_parallel_workers={workers}", "eval_while_train=false"])
    assert "internal error" in str(stopped.value) and "cannot be decoded" not in caplog.text
    if workers:  # the worker's traceback travels in the message
        assert "broken_transform" in str(stopped.value)
    else:
        assert isinstance(stopped.value.__cause__, ValueError)
    assert not (tmp_path / "last.pt").exists()


def test_a_failed_write_into_a_full_filesystem_exits_with_loader_workers(shapes, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root here")
    try:
        run = mount / "run"
        command = [sys.executable, "-m", "ssdzoo", "train", str(TINY_CONFIG), f"data_dir={shapes}",
                   f"ckpt_save_dir={run}", "num_parallel_workers=1", "eval_while_train=false", "--epochs", "1"]
        first = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr[-3000:]
        # fill the filesystem but for 64 kB: the records fit, the next last.pt does not
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        assert free > (run / "last.pt").stat().st_size + 65536
        (mount / "filler").write_bytes(b"\0" * (free - 65536))
        start = time.monotonic()
        second = subprocess.run([*command, "--resume", "auto"], env=ENV, capture_output=True, text=True,
                                timeout=120)
        seconds = time.monotonic() - start
        assert second.returncode == 2, second.stderr[-3000:]
        assert f"ssdzoo train: error: cannot write {run / 'last.pt'}: No space left on device (the previous " \
               "file is intact)" in second.stderr
        assert seconds < 60, f"took {seconds:.0f} s to exit"
        assert load_checkpoint(run / "last.pt")["epoch"] == 1
        assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(mount)], check=True)


LOOP = textwrap.dedent("""
    import sys
    import ssdzoo
    from ssdzoo.data import make_loader

    cfg = ssdzoo.load_config(sys.argv[1], [f"data_dir={sys.argv[2]}", "num_parallel_workers=2"])
    dataset = ssdzoo.load_dataset(sys.argv[2], cfg, train=True)
    loader = make_loader(dataset, cfg, train=True)
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            pass
    print("looped", flush=True)
""")


def test_a_module_level_loader_loop_exits(shapes, tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    done = subprocess.run([sys.executable, str(script), str(TINY_CONFIG), str(shapes)], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "looped\n", done.stderr[-3000:]


RUNNER = Path(__file__).with_name("fault_runner.py")


@pytest.mark.parametrize("fault, status, message", [
    ("enospc@3", 1, "ssdzoo train: error: cannot write {run}/last.pt: No space left on device"),
    ("error-rank1@3", 1, "ssdzoo train: error: injected data error on rank 1"),
    ("sigterm-agent@3", None, "ssdzoo train: stopped by SIGTERM"),
])
def test_every_rank_and_its_loader_workers_end_under_torchrun(shapes, tmp_path, fault, status, message):
    """torchrun --nproc_per_node 2 (gloo), one loader worker per rank: a full disk on rank 0, a
    data error on rank 1 or a SIGTERM to the job ends every process within seconds."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(RUNNER), fault, "train", str(TINY_CONFIG), f"data_dir={shapes}", f"ckpt_save_dir={run}",
               "batch_size=2", "freeze_bn=true", "num_parallel_workers=1", "eval_while_train=false"]
    start = time.monotonic()
    done = subprocess.run(command, env={**ENV, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}, capture_output=True,
                          text=True, timeout=120)
    seconds = time.monotonic() - start
    assert done.returncode != 0 and (status is None or done.returncode == status), done.stderr[-3000:]
    assert message.format(run=run) in done.stderr, done.stderr[-3000:]
    assert seconds < 60, f"took {seconds:.0f} s"


def _session_processes(sid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # field 6 of stat: the session id
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_job_ends_training_and_its_workers(shapes, tmp_path, signum):
    """Ctrl-C in a terminal or a scheduler's SIGTERM reaches every process of the job: the
    workers ignore it, the main process saves, stops with its status, and no worker is left."""
    command = [sys.executable, "-m", "ssdzoo", "train", str(TINY_CONFIG), f"data_dir={shapes}",
               f"ckpt_save_dir={tmp_path}", "num_parallel_workers=2", "eval_while_train=false", "epoch_size=50",
               "log_interval=1"]
    job = subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in job.stderr:
            if "epoch 1/50 step 2/4" in line:
                break
        os.killpg(job.pid, signum)
        start = time.monotonic()
        rest = job.stderr.read()
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert time.monotonic() - start < 60
    assert job.returncode == 128 + signum, rest[-3000:]
    assert f"ssdzoo train: stopped by {signal.Signals(signum).name}" in rest
    deadline = time.monotonic() + 10
    while _session_processes(job.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _session_processes(job.pid), "loader workers outlived the run"


@pytest.mark.parametrize("case", ["diverged", "unreadable"])
def test_a_diverged_run_or_too_many_unreadable_images_exits_with_loader_workers(shapes, tmp_path, case):
    data, overrides = shapes, ["lr=1000000000000.0", "lr_init=1000000000000.0", "grad_clip=0"]
    if case == "unreadable":  # bit rot in a packed shard: the first training image lost its header
        data = tmp_path / "packed"
        prepare_coco(shapes, data, splits=["train2017"], progress=False)
        split = PackedSplit(data / "train2017")
        shard = data / "train2017" / split.manifest["shards"][int(split.shard_of[0])]["file"]
        rotten = bytearray(shard.read_bytes())
        start = rotten.find(split.read(0))
        rotten[start:start + 4] = b"\0\0\0\0"
        shard.write_bytes(bytes(rotten))
        overrides = ["max_unreadable_share=0"]
    command = [sys.executable, "-m", "ssdzoo", "train", str(TINY_CONFIG), f"data_dir={data}",
               f"ckpt_save_dir={tmp_path / 'run'}", "num_parallel_workers=2", "eval_while_train=false", *overrides]
    start = time.monotonic()
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 60
    if case == "diverged":
        assert done.returncode == 1 and "ssdzoo train: error: the loss became" in done.stderr, done.stderr[-3000:]
    else:
        assert done.returncode == 2 and "1 training images could not be decoded in epoch 1" in done.stderr, \
            done.stderr[-3000:]
