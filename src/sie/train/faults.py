"""Fault handling of the training loop: non-finite losses.

A loss that is NaN or infinite stops the run before the optimiser step, so the weights in memory
and the last checkpoint on disk both stay finite. The error names the step and every loss term that
went non-finite, and points at the checkpoint that is kept. (A full disk while checkpointing is
handled by :func:`sie.checkpoint.save_checkpoint`, which leaves the previous file intact.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from sie.errors import WorkFailed

__all__ = ["NonFiniteLoss", "nonfinite_terms"]


class NonFiniteLoss(WorkFailed):
    """The loss became NaN or infinite (exit status 1)."""


def nonfinite_terms(values: Mapping[str, float]) -> list[str]:
    """Names (sorted) of the entries of ``values`` that are NaN or +-inf, shown with their value."""
    return [f"{name}={value}" for name, value in sorted(values.items()) if not math.isfinite(value)]
