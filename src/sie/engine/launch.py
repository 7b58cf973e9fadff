"""Process-group set-up from the torchrun environment, DDP wrapping, and cross-rank agreement.

Rank, local rank and world size come from the environment only (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, as set by ``torchrun``); nothing here reads SLURM
variables or touches ``CUDA_VISIBLE_DEVICES``. The backend is NCCL for CUDA devices and gloo on CPU.
``train.batch_size`` is global: each rank processes ``batch_size / world_size`` pairs per step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from sie.device import resolve_device
from sie.engine.sync_bn import convert_to_sync_batchnorm
from sie.errors import ConfigError, UsageError

__all__ = [
    "DistContext",
    "all_reduce_max",
    "all_reduce_sum",
    "init_distributed",
    "per_device_batch_size",
    "shutdown",
    "wrap",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: global rank, rank on its node, number of processes, its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    owns_process_group: bool  # False when the caller had already initialised torch.distributed

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None:
        raise UsageError(f"distributed run: environment variable {name} is not set; launch with torchrun")
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"distributed run: {name}={value!r} is not an integer") from None


def init_distributed(device_name: str) -> DistContext:
    """Initialise torch.distributed when ``WORLD_SIZE > 1`` (or reuse an existing process group).

    Args:
        device_name: ``train.device`` (``auto``, ``cpu`` or ``cuda``); CUDA ranks use ``cuda:LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(device_name, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return DistContext(rank, local_rank, world, device, owns_process_group=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(0, 0, 1, resolve_device(device_name, 0), owns_process_group=False)
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if not os.environ.get("MASTER_ADDR"):
        raise UsageError("distributed run: MASTER_ADDR is not set; launch with torchrun")
    _env_int("MASTER_PORT")
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                "use torchrun --nproc-per-node <= the number of GPUs"
            )
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", rank=rank, world_size=world, device_id=device)
    else:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    return DistContext(rank, local_rank, world, device, owns_process_group=True)


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if ctx.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


def per_device_batch_size(global_batch: int, world_size: int) -> int:
    """``global_batch / world_size``; refuses sizes that do not divide (as the reference asserts)."""
    if global_batch % world_size != 0:
        raise ConfigError(
            f"train.batch_size={global_batch} is the global batch and must be divisible by the number "
            f"of processes ({world_size}); e.g. {global_batch - global_batch % world_size or world_size}"
        )
    return global_batch // world_size


def wrap(module: nn.Module, ctx: DistContext, *, sync_bn: bool) -> nn.Module:
    """SyncBatchNorm (when asked) and DDP for a distributed run; the module itself otherwise.

    SyncBatchNorm is PyTorch's on CUDA; on CPU (gloo), where PyTorch's refuses to run, it is
    :class:`sie.engine.sync_bn.SyncBatchNormCPU`. Either keeps the state-dict keys of BatchNorm.
    """
    if not ctx.distributed:
        return module
    if sync_bn:
        if ctx.device.type == "cuda":
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)  # type: ignore[no-untyped-call]
        else:
            module = convert_to_sync_batchnorm(module)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def all_reduce_max(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Element-wise maximum over ranks (in place; identity when not distributed)."""
    if ctx.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Element-wise sum over ranks (in place; identity when not distributed)."""
    if ctx.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values
