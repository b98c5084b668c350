"""torchrun's environment, read once and passed down (no global state), and the few collectives
training needs besides DDP's own.

Small decisions the ranks must share (stop at this step, save now, how many images failed to
decode, which checkpoint to resume) travel on a CPU group: the default group on the CPU (gloo),
a gloo group beside NCCL on GPUs, so that they never wait on the GPU stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1  # processes on this node
    restart: int = 0  # torchrun's restarts of the worker group so far

    @classmethod
    def from_env(cls) -> "DistInfo":
        """Set by torchrun (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
        TORCHELASTIC_RESTART_COUNT); a plain run is rank 0 of 1."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                   int(env.get("LOCAL_WORLD_SIZE", 1)), int(env.get("TORCHELASTIC_RESTART_COUNT", 0)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def restart_hazard() -> Optional[str]:
    """A warning for torchrun restarts over its shared TCP store, which keeps a failed attempt's
    keys: restarted workers may read them and fail to connect (pytorch/pytorch#135712)."""
    env = os.environ
    if int(env.get("TORCHELASTIC_MAX_RESTARTS", 0)) > 0 and env.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return ("torchrun --max-restarts with its shared TCP store: a restarted group may fail to connect "
                "(pytorch/pytorch#135712); export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 before torchrun")
    return None


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """"auto": this rank's GPU if there is one, else the CPU."""
    if name == "auto":
        name = f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return device


def init_process_group(info: DistInfo, device: torch.device) -> Optional[dist.ProcessGroup]:
    """NCCL between GPUs, gloo on the CPU. Returns the CPU group for ``sum_ints``,
    ``broadcast`` and ``gather`` (None when not distributed)."""
    if not info.enabled:
        return None
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.get_backend() == "gloo":
        return dist.group.WORLD
    return dist.new_group(backend="gloo")


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value)
    return value


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def sum_ints(values: Sequence[int], info: DistInfo, group: Optional[dist.ProcessGroup]) -> list[int]:
    """Each value summed over the ranks (one CPU all-reduce)."""
    if not info.enabled:
        return [int(v) for v in values]
    tensor = torch.tensor(values, dtype=torch.int64)
    dist.all_reduce(tensor, group=group)
    return tensor.tolist()


def broadcast(value: Any, info: DistInfo, group: Optional[dist.ProcessGroup]) -> Any:
    """Rank 0's ``value`` on every rank (plain Python values: strings, numbers, dicts)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def gather(value: Any, info: DistInfo, group: Optional[dist.ProcessGroup]) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not info.enabled:
        return [value]
    values: list[Any] = [None] * info.world_size
    dist.all_gather_object(values, value, group=group)
    return values
