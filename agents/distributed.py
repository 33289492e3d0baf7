"""Running one training job on several processes with ``torchrun`` (torch.distributed + DDP).

``torchrun --nproc_per_node=K -m agents.cli train ...`` starts K processes; each reads its rank from
the environment ``torchrun`` sets, collects its own rollouts (distinct env seeds), and
``DistributedDataParallel`` averages the gradients. gloo carries the traffic on CPU, nccl on GPU.
``Processes`` wraps the few collective operations training needs, and is a no-op for one process.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of a run (rank 0 of 1 without ``torchrun``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and the final evaluation."""
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over all processes (a new tensor; no gradient flows through it)."""
        total = tensor.detach().clone()
        if self.distributed:
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def sum_floats(self, *values: float) -> list[float]:
        """Several Python numbers summed over all processes in one collective call."""
        if not self.distributed:
            return [float(v) for v in values]
        return self.sum(torch.tensor(values, dtype=torch.float64, device=self._device())).tolist()

    def gather_arrays(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each key's arrays from every process, concatenated in rank order."""
        if not self.distributed:
            return arrays
        everyone: list[dict[str, np.ndarray] | None] = [None] * self.world_size
        dist.all_gather_object(everyone, arrays)
        return {key: np.concatenate([part[key] for part in everyone]) for key in arrays}

    def same_everywhere(self, tensors) -> bool:
        """Whether every process holds exactly the same values (compared through a float64 fingerprint)."""
        fingerprint = torch.zeros((), dtype=torch.float64, device=self._device())
        for i, tensor in enumerate(tensors):
            flat = tensor.detach().double().flatten()
            weights = torch.arange(1, len(flat) + 1, dtype=torch.float64, device=flat.device).remainder(9973) + i + 1
            fingerprint = fingerprint + (flat * weights).sum().to(fingerprint.device)
        if not self.distributed:
            return True
        low, high = fingerprint.clone(), fingerprint.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        return bool(low == high)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def _device(self) -> torch.device:
        # nccl only moves CUDA tensors; gloo works on CPU ones.
        if self.distributed and dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def start_processes(device: str = "auto") -> Processes:
    """Join the process group ``torchrun`` describes in the environment; one process when it is absent."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return Processes(rank=rank, world_size=world_size, local_rank=local_rank)


def stop_processes(processes: Processes) -> None:
    """Leave the process group (every rank, after the last collective call)."""
    if processes.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
