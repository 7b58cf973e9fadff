"""Device and precision choices in one place: which device, which autocast, whether to scale grads."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch

from sie.errors import UsageError

__all__ = ["Precision", "autocast", "default_device_name", "resolve_device", "resolve_precision"]

DeviceName = Literal["auto", "cpu", "cuda"]
PrecisionName = Literal["fp32", "bf16", "fp16"]


def default_device_name() -> str:
    """What ``auto`` means everywhere (training, evaluation, rendering): ``cuda`` when PyTorch sees a GPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = default_device_name()
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")
        return torch.device("cuda", local_rank)
    raise UsageError(f"--device {name!r}: expected auto, cpu or cuda")


@dataclass(frozen=True)
class Precision:
    """How to run a step: the autocast dtype (None = fp32) and whether a GradScaler is needed."""

    name: PrecisionName
    autocast_dtype: torch.dtype | None
    needs_grad_scaler: bool


def resolve_precision(name: str, device: torch.device) -> Precision:
    """fp32 -> no autocast; bf16 -> bf16 autocast; fp16 -> fp16 autocast + GradScaler (CUDA only)."""
    if name == "fp32":
        return Precision("fp32", None, False)
    if name == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UsageError("--precision bf16: this GPU does not support bfloat16; use fp16 or fp32")
        return Precision("bf16", torch.bfloat16, False)
    if name == "fp16":
        if device.type != "cuda":
            raise UsageError("--precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return Precision("fp16", torch.float16, True)
    raise UsageError(f"--precision {name!r}: expected fp32, bf16 or fp16")


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """The autocast context for a forward pass (a no-op in fp32)."""
    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.autocast_dtype)
