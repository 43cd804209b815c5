"""Process-group setup for ``torchrun``: gloo on CPU, nccl on CUDA; a no-op for one process."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["DistInfo", "setup_distributed", "resolve_device", "barrier", "teardown"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created: bool = False  # this call initialized the group (so its owner destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is there, else ``cpu``; ``cuda`` gets the local rank."""
    from ..errors import ConfigError

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for but CUDA is not available; use device: cpu or auto")
        return torch.device(device if ":" in device else f"cuda:{local_rank}")
    if device != "cpu":
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE>1``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, created=True)


def barrier() -> None:
    """Wait for every rank (a no-op outside a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def teardown(info: DistInfo) -> None:
    """Leave the process group ``info`` created (its owner's job)."""
    import torch.distributed as dist

    if info.created and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
