"""The regression targets of the protocol, as functions of per-view latents (facebookresearch/SIE; docs/evaluation.md).

Latent layout (DESIGN.md contract 1): rot x, rot y, rot z (extrinsic xyz Euler, radians), floor hue,
spot theta, spot phi, spot hue, and for -T datasets translation x, y, z.

* ``rotation``: quaternion (x, y, z, w) of ``R_a^-1 R_b``, not canonicalised (the training target).
* ``colour``: ``(floor hue, spot hue)`` of view b minus view a, not wrapped (the reference).
* ``translation`` (-T datasets): translation of view b minus view a (EquiCaps' "object frame").
* ``translation_base`` (-T datasets): ``R_b t_b - R_a t_a``, the translation parts of the views' base-frame
  poses R T (EquiCaps' "base (final) frame" probe, AberdeenML/EquiCaps).
* ``absolute_rotation``: quaternion of one view's own rotation (single-view probe).

Pair targets come from ``sie.data.targets.relative_transforms`` (the training targets' code).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from sie.data.targets import relative_transforms, se3_pose
from sie.geometry import euler_xyz_to_quaternion

__all__ = [
    "REGRESSION_TASKS",
    "RegressionTask",
    "absolute_rotation_target",
    "colour_pair_target",
    "regression_tasks_for",
    "rotation_pair_target",
    "translation_base_pair_target",
    "translation_pair_target",
]


def rotation_pair_target(pair_latents: Tensor) -> Tensor:
    """Latents (B, 2, L) -> quaternion (B, 4) float32 of ``R_a^-1 R_b`` (scipy's sign, not canonical)."""
    return relative_transforms(pair_latents, "quat")[:, 0, :4]


def colour_pair_target(pair_latents: Tensor) -> Tensor:
    """Latents (B, 2, L) -> (Δ floor hue, Δ spot hue) (B, 2) float32, view b minus view a, not wrapped."""
    return relative_transforms(pair_latents, "rotcolor")[:, 0, 4:6]


def translation_pair_target(pair_latents: Tensor) -> Tensor:
    """Latents (B, 2, 10) of a -T dataset -> translation of view b minus view a (B, 3) float32."""
    return relative_transforms(pair_latents, "quat")[:, 0, 4:7]


def translation_base_pair_target(pair_latents: Tensor) -> Tensor:
    """Latents (B, 2, 10) of a -T dataset -> ``R_b t_b - R_a t_a`` (B, 3) float32 (base-frame translations)."""
    translation = se3_pose(pair_latents, "base")[..., :3, 3]
    return (translation[:, 1] - translation[:, 0]).float()


def absolute_rotation_target(view_latents: Tensor) -> Tensor:
    """Latents (B, L) -> quaternion (B, 4) float32 of the view's own rotation."""
    return euler_xyz_to_quaternion(view_latents[:, 0:3].to(torch.float64)).float()


@dataclass(frozen=True)
class RegressionTask:
    """One regression probe: its name, whether it reads a pair or a single view, and its target."""

    name: str
    kind: Literal["pair", "view"]
    out_dim: int
    target: Callable[[Tensor], Tensor]
    """Latents (B, 2, L) of pairs (kind "pair") or (B, L) of views (kind "view") -> targets (B, out_dim)."""
    description: str
    min_latent_size: int = 7


REGRESSION_TASKS: dict[str, RegressionTask] = {
    "rotation": RegressionTask(
        "rotation", "pair", 4, rotation_pair_target, "relative rotation quaternion of R_a^-1 R_b"
    ),
    "colour": RegressionTask("colour", "pair", 2, colour_pair_target, "floor and spot hue deltas (b - a)"),
    "translation": RegressionTask(
        "translation", "pair", 3, translation_pair_target, "translation deltas (b - a), -T datasets", 10
    ),
    "translation_base": RegressionTask(
        "translation_base",
        "pair",
        3,
        translation_base_pair_target,
        "base-frame translation deltas R_b t_b - R_a t_a, -T datasets",
        10,
    ),
    "absolute_rotation": RegressionTask(
        "absolute_rotation", "view", 4, absolute_rotation_target, "quaternion of a single view's rotation"
    ),
}


def regression_tasks_for(latent_size: int, names: tuple[str, ...]) -> list[RegressionTask]:
    """The requested regression tasks that the dataset's latents support (translation needs 10 values)."""
    return [
        REGRESSION_TASKS[n]
        for n in names
        if n in REGRESSION_TASKS and latent_size >= REGRESSION_TASKS[n].min_latent_size
    ]
