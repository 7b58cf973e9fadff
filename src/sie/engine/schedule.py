"""Learning rate as a pure function of the global step (nothing to fast-forward on resume).

Schedules: ``constant`` (the reference: Adam at a fixed lr, no warm-up) and ``cosine`` (half-cosine
decay from ``base_lr`` to ``final_lr`` over the steps after warm-up). Either can start with a linear
warm-up. Step numbers count optimiser steps from 0; ``lr_at(0)`` is the lr of the first step.
"""

from __future__ import annotations

import math

__all__ = ["lr_at", "warmup_steps_for"]


def warmup_steps_for(warmup_epochs: float, steps_per_epoch: int) -> int:
    """Warm-up length in steps: ``round(warmup_epochs * steps_per_epoch)``."""
    return round(warmup_epochs * steps_per_epoch)


def lr_at(
    step: int,
    *,
    base_lr: float,
    total_steps: int,
    schedule: str = "constant",
    warmup_steps: int = 0,
    final_lr: float = 0.0,
) -> float:
    """Learning rate of optimiser step ``step`` (0-based).

    * warm-up (``step < warmup_steps``): ``base_lr * (step + 1) / warmup_steps``, so the last warm-up
      step reaches ``base_lr`` and step 0 is not wasted at lr 0;
    * ``constant``: ``base_lr`` afterwards;
    * ``cosine``: ``final_lr + (base_lr - final_lr) * (1 + cos(pi * t)) / 2`` with
      ``t = (step - warmup_steps) / (total_steps - warmup_steps)`` clipped to [0, 1].

    Args:
        step: global optimiser step, >= 0.
        base_lr: peak learning rate.
        total_steps: steps of the whole run (epochs x steps per epoch); only cosine uses it.
        schedule: ``"constant"`` or ``"cosine"``.
        warmup_steps: linear warm-up length in steps (0 = none).
        final_lr: learning rate the cosine decays to.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, max(0.0, (step - warmup_steps) / span))
        return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {schedule!r}; expected 'constant' or 'cosine'")
