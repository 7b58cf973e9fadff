"""The optimiser: the reference's Adam (coupled L2 weight decay on every parameter) or AdamW / SGD.

The parameters come in the method's groups (:meth:`sie.methods.Method.parameter_groups`, one group
by default) followed by the online probes. Adjacent groups with the same settings share one optimiser
group, so a method without groups of its own gets exactly the reference's single group.
``optim.exclude_bias_and_norm`` splits each group into one with weight decay and one without for
biases and normalisation parameters (every parameter with at most one dimension); the reference
defines that option but never uses it, so it is off by default. Each step the learning rate of every
group is set to the scheduled rate (:func:`sie.engine.schedule.lr_at`) times the group's ``lr_scale``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sie.config import OptimConfig
from sie.methods.base import ParamGroup

__all__ = ["build_optimizer", "optimizer_groups", "set_lr"]


def optimizer_groups(groups: Sequence[ParamGroup], cfg: OptimConfig) -> list[dict[str, Any]]:
    """The ``torch.optim`` parameter groups for ``groups`` (see the module docstring).

    Raises:
        ValueError: a parameter in two groups, or one that does not require a gradient.
    """
    merged: list[dict[str, Any]] = []
    seen: dict[int, str] = {}
    for group in groups:
        for p in group.params:
            if id(p) in seen:
                raise ValueError(
                    f"a parameter is in both parameter groups {seen[id(p)]!r} and {group.name!r}"
                )
            if not p.requires_grad:
                raise ValueError(
                    f"parameter group {group.name!r} holds a parameter that requires no gradient"
                )
            seen[id(p)] = group.name
        if not group.params:
            continue
        decay = cfg.weight_decay if group.weight_decay is None else group.weight_decay
        if merged and merged[-1]["lr_scale"] == group.lr_scale and merged[-1]["weight_decay"] == decay:
            merged[-1]["params"].extend(group.params)
        else:
            merged.append({"params": list(group.params), "weight_decay": decay, "lr_scale": group.lr_scale})
    if not cfg.exclude_bias_and_norm:
        return merged
    split: list[dict[str, Any]] = []
    for g in merged:
        split.append({**g, "params": [p for p in g["params"] if p.ndim > 1]})
        split.append({**g, "params": [p for p in g["params"] if p.ndim <= 1], "weight_decay": 0.0})
    return split


def build_optimizer(groups: Sequence[ParamGroup], cfg: OptimConfig) -> torch.optim.Optimizer:
    """One optimiser over ``groups`` (the method's, then the online probes').

    The fused implementation (one kernel over all parameters) is used: the same update rule as the
    per-tensor loop, and on a 2-core CPU about 7x faster for a ResNet-18 (0.015 s vs 0.10 s per step,
    one thread), which matters next to a 64 px step. Optimiser states are the same, so checkpoints
    load either way.
    """
    param_groups = optimizer_groups(groups, cfg)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(param_groups, lr=cfg.lr, fused=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr, fused=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, fused=True)
    raise ValueError(f"unknown optimiser {cfg.optimizer!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group to ``lr`` times its ``lr_scale`` (1 if absent)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
