"""Fault handling of the training loop: non-finite losses and non-finite weights.

A loss that is NaN or infinite stops the run before the optimiser step, so the weights in memory
and the last checkpoint on disk both stay finite. A step with a finite loss can still leave
non-finite weights or optimiser state behind (a huge learning rate, an overflowing Adam moment):
every checkpoint write first checks every floating-point tensor it would save (parameters, EMA
targets and buffers of the method, the online probes, the optimiser state, the GradScaler) and
refuses to write a non-finite one, so the checkpoint on disk is always the last good one. The
errors name the step and what went non-finite, and point at the checkpoint that is kept. (A full
disk while checkpointing is handled by :func:`sie.checkpoint.save_checkpoint`, which leaves the
previous file intact.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from sie.errors import WorkFailed

__all__ = ["NonFiniteLoss", "NonFiniteState", "nonfinite_entries", "nonfinite_terms"]


class NonFiniteLoss(WorkFailed):
    """The loss became NaN or infinite (exit status 1)."""


class NonFiniteState(NonFiniteLoss):
    """Weights, buffers or optimiser state became NaN or infinite (exit status 1); nothing was saved."""


def nonfinite_terms(values: Mapping[str, float]) -> list[str]:
    """Names (sorted) of the entries of ``values`` that are NaN or +-inf, shown with their value."""
    return [f"{name}={value}" for name, value in sorted(values.items()) if not math.isfinite(value)]


def _floats(value: Any, name: str, out: list[tuple[str, Tensor | float]]) -> None:
    if isinstance(value, Tensor):
        if value.is_floating_point() or value.is_complex():
            out.append((name, value))
    elif isinstance(value, float):
        out.append((name, value))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _floats(item, f"{name}.{key}" if name else str(key), out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _floats(item, f"{name}.{index}" if name else str(index), out)


def nonfinite_entries(state: Mapping[str, Any]) -> list[str]:
    """Dotted names of the floating-point tensors and floats in a nested ``state`` holding NaN or inf.

    One device synchronisation when everything is finite (the usual case); names only on failure.
    """
    entries: list[tuple[str, Tensor | float]] = []
    _floats(state, "", entries)
    tensors = [v for _, v in entries if isinstance(v, Tensor) and v.numel()]
    finite = all(math.isfinite(v) for _, v in entries if isinstance(v, float))
    if finite and tensors:
        by_device: dict[torch.device, list[Tensor]] = {}
        for t in tensors:
            by_device.setdefault(t.device, []).append(torch.isfinite(t).all())
        finite = all(bool(torch.stack(flags).all()) for flags in by_device.values())
    if finite:
        return []
    return [
        name
        for name, v in entries
        if (not math.isfinite(v) if isinstance(v, float) else v.numel() and not bool(torch.isfinite(v).all()))
    ]
