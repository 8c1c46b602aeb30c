"""Data-parallel training with PyTorch's DistributedDataParallel, started by torchrun.

``torchrun --nproc_per_node N -m padrec train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`init_distributed` joins them into one group
(NCCL on CUDA, each process on ``cuda:LOCAL_RANK``; gloo on CPU). Every process builds the
same model from the same seed; the trainer wraps it in DDP for the phase's parameters, cuts
each global batch into per-process shares, and only rank 0 validates and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from padrec.devices import resolve_device


@dataclass
class Distributed:
    """This process's place in a data-parallel group (a group of one without torchrun).

    Attributes:
        rank: global index of this process (0 writes files and validates).
        world_size: number of processes.
        local_rank: index of this process on its machine (picks its GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.enabled:
            dist.barrier()

    def broadcast_float(self, value: float) -> float:
        """Rank 0's ``value`` on every process."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
        dist.broadcast(t, src=0)
        return float(t.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over processes (same keys on every process)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist())}


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def world_from_env() -> Distributed:
    """The group torchrun describes in the environment (a group of one when it is not set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Distributed(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(device_name: str) -> tuple[Distributed, torch.device]:
    """Join the torchrun group (if any) and pick this process's device.

    Without torchrun: a group of one and ``resolve_device(device_name)``. Under torchrun:
    CUDA (``auto`` with CUDA present, ``cuda``) puts process ``LOCAL_RANK`` on
    ``cuda:LOCAL_RANK`` with the NCCL backend; otherwise every process runs on the CPU with gloo.
    """
    world = world_from_env()
    device = resolve_device(device_name)
    if not world.enabled:
        return world, device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def shutdown(world: Distributed) -> None:
    """Leave the process group at the end of a run."""
    if world.enabled and dist.is_initialized():
        dist.destroy_process_group()
