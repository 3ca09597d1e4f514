"""Process-group setup for torchrun (multi-GPU / multi-node) and the few collectives the trainer needs.

Launch: ``torchrun --nproc_per_node N -m deeplab train cfg.yaml`` (or the ``deeplab`` script via
``torchrun --nproc_per_node N $(which deeplab) train ...``). torchrun sets RANK, WORLD_SIZE and LOCAL_RANK;
without them the run is a single process. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from deeplab.errors import InputError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """pref: auto | cpu | cuda -> the torch.device of this process (cuda:<local_rank>)."""
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError("train.device: cuda requested but torch.cuda.is_available() is False")
    return torch.device("cuda", local_rank)


def setup(device_pref: str = "auto") -> DistEnv:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=device)


def cleanup(env: DistEnv, wait_for_all: bool = False) -> None:
    """Leave the process group. wait_for_all (a normal finish): first a barrier, so no rank tears gloo down
    while another is still in a collective or writing files (a rare abort at exit in the 2-process test)."""
    if env.distributed and dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank if ``flag`` is True on any rank (e.g. a stop signal seen by one process)."""
    if not env.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(value: float, env: DistEnv) -> float:
    """Average a Python float over all ranks (for logging)."""
    if not env.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return float(t.item()) / env.world_size


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module, env: DistEnv) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank. DDP does this before each forward;
    call it after the last one so all ranks end with the same model."""
    if env.distributed:
        for b in module.buffers():
            dist.broadcast(b, src=0)


def sum_over_ranks(array, env: DistEnv):
    """Element-wise sum of a NumPy integer/float array over all ranks (returned on every rank)."""
    if not env.distributed:
        return array
    import numpy as np

    t = torch.from_numpy(np.ascontiguousarray(array))
    dist.all_reduce(t)
    return t.numpy()


def gather_lists(items: list, env: DistEnv) -> list:
    """Concatenation over ranks (in rank order) of each rank's list of picklable items, on every rank."""
    if not env.distributed:
        return items
    out: list = [None] * env.world_size
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


def shard(n: int, env: DistEnv) -> list[int]:
    """This rank's share of n items: indices rank, rank + world, ... (every item on exactly one rank)."""
    return list(range(env.rank, n, env.world_size))
