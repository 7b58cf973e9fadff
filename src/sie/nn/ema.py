"""Momentum (EMA) targets, as in BYOL (Grill et al., NeurIPS 2020) and seq-JEPA (Ghaemi et al., 2025).

A target network is a frozen copy of an online module whose parameters follow the online ones:
``theta_target <- tau * theta_target + (1 - tau) * theta_online`` after every optimiser step. The
momentum tau either stays at its base value or ramps from it to 1 along a cosine,

    tau(t) = 1 - (1 - tau_base) * (cos(pi * t) + 1) / 2,      t = progress in [0, 1],

with t = step / total steps (BYOL) or epoch / epochs (seq-JEPA's per-epoch schedule). The target's
parameters are module parameters with ``requires_grad=False``, so they sit in the method's state dict:
checkpoints save them and an exact resume restores them; the schedule depends only on the step.
Buffers (BatchNorm running statistics) are not averaged: the target keeps its own, as both references.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["EMATarget", "ema_momentum"]

Schedule = Literal["constant", "cosine"]


def ema_momentum(base: float, progress: float, schedule: Schedule = "cosine") -> float:
    """The momentum tau at ``progress`` in [0, 1] of training (see the module docstring).

    Raises:
        ValueError: ``base`` outside [0, 1] or ``progress`` outside [0, 1].
    """
    if not 0.0 <= base <= 1.0:
        raise ValueError(f"EMA momentum {base} must be in [0, 1]")
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"training progress {progress} must be in [0, 1]")
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
    raise ValueError(f"unknown EMA schedule {schedule!r}; expected 'constant' or 'cosine'")


class EMATarget(nn.Module):
    """A frozen copy of ``online`` whose parameters track it by exponential moving average.

    Args:
        online: the module to copy (its current weights become the target's start).

    Attributes:
        module: the copy; call the target like the module it copies.
        momentum: (scalar buffer) the tau of the last update, for logging; saved with the state dict.
    """

    momentum: torch.Tensor

    def __init__(self, online: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(online)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.register_buffer("momentum", torch.tensor(float("nan"), dtype=torch.float64))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The copied module's forward, without gradients."""
        with torch.no_grad():
            return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, online: nn.Module, momentum: float) -> None:
        """``target <- momentum * target + (1 - momentum) * online``, parameter by parameter.

        Raises:
            ValueError: ``online`` does not have the target's parameter names and shapes.
        """
        target_params = dict(self.module.named_parameters())
        online_params = dict(online.named_parameters())
        if target_params.keys() != online_params.keys():
            raise ValueError("EMA update: the online module's parameters do not match its target's")
        for name, target in target_params.items():
            target.mul_(momentum).add_(online_params[name].detach().to(target.dtype), alpha=1.0 - momentum)
        self.momentum.fill_(momentum)
