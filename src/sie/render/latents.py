"""Per-view latent sampling: the 3DIEBench laws, the -T and -OOD variants, custom ranges, orbit grids.

A latent vector is float64, in the order of 3DIEBench's ``latent_{v}.npy`` (facebookresearch/SIE ``data/main.py``; docs/render.md):

====  ===========  ===========================================  ======================
idx   name         meaning                                      3DIEBench law
====  ===========  ===========================================  ======================
0-2   rot_x/y/z    extrinsic xyz Euler angles of the object     U(-pi/2, pi/2) each
3     floor_hue    floor colour HSV(h, 0.6, 0.6)                U(0, 1)
4     spot_theta   spot polar angle from +Z                     U(0, pi/4)
5     spot_phi     spot azimuth                                 U(0, 2 pi)
6     spot_hue     spot colour HSV(h, 1, 0.8)                   U(0, 1)
7-9   trans_x/y/z  object location (-T variant only)            U(-0.5, 0.5) each
====  ===========  ===========================================  ======================

Within one view the uniforms are drawn in the reference's order (floor hue, spot theta, spot phi,
spot hue, then the three angles; data/main.py), then the variant's extra draws. The -OOD variant
draws each angle as ``sign * U(pi/2, pi)`` with a fair random sign, i.e. outside the training range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sie.errors import ConfigError

__all__ = [
    "FACTORS",
    "FactorRanges",
    "latent_size",
    "orbit_latents",
    "sample_latents",
]

FACTORS: tuple[str, ...] = (
    "rot_x",
    "rot_y",
    "rot_z",
    "floor_hue",
    "spot_theta",
    "spot_phi",
    "spot_hue",
    "trans_x",
    "trans_y",
    "trans_z",
)
"""Names of the latent components, in file order."""

_VARIANTS = ("base", "T", "OOD")


@dataclass(frozen=True)
class FactorRanges:
    """Closed ranges ``(low, high)`` of the uniform laws; defaults are 3DIEBench's.

    ``ood_rotation`` is the range of the angle *magnitude* in the -OOD variant. A range with
    ``low == high`` pins the factor to one value.
    """

    rotation: tuple[float, float] = (-math.pi / 2, math.pi / 2)
    floor_hue: tuple[float, float] = (0.0, 1.0)
    spot_theta: tuple[float, float] = (0.0, math.pi / 4)
    spot_phi: tuple[float, float] = (0.0, 2 * math.pi)
    spot_hue: tuple[float, float] = (0.0, 1.0)
    translation: tuple[float, float] = (-0.5, 0.5)
    ood_rotation: tuple[float, float] = (math.pi / 2, math.pi)

    def check(self, prefix: str = "render.") -> None:
        """Raise ConfigError naming the key of any range that is not two finite numbers low <= high."""
        for name in (
            "rotation",
            "floor_hue",
            "spot_theta",
            "spot_phi",
            "spot_hue",
            "translation",
            "ood_rotation",
        ):
            value = getattr(self, name)
            key = f"{prefix}{name}_range"
            if len(value) != 2 or not all(math.isfinite(x) for x in value):
                raise ConfigError(f"{key}={list(value)} must be two finite numbers [low, high]")
            if value[0] > value[1]:
                raise ConfigError(f"{key}={list(value)}: low must be <= high")
        if self.ood_rotation[0] < 0:
            raise ConfigError(
                f"{prefix}ood_rotation_range={list(self.ood_rotation)} is a magnitude; use low >= 0"
            )

    def of(self, factor: str, variant: str = "base") -> tuple[float, float]:
        """Range of one factor (by name in :data:`FACTORS`); OOD rotations span [-high, high]."""
        if factor.startswith("rot_"):
            if variant == "OOD":
                return (-self.ood_rotation[1], self.ood_rotation[1])
            return self.rotation
        if factor.startswith("trans_"):
            return self.translation
        ranges: tuple[float, float] = getattr(self, factor)
        return ranges


def latent_size(variant: str) -> int:
    """7 for base and OOD, 10 for -T (translations appended)."""
    if variant not in _VARIANTS:
        raise ConfigError(f"render.variant={variant!r} must be one of {', '.join(_VARIANTS)}")
    return 10 if variant == "T" else 7


def _scale(u: np.ndarray, lo_hi: tuple[float, float]) -> np.ndarray:
    lo, hi = lo_hi
    scaled: np.ndarray = lo + (hi - lo) * u
    return scaled


def sample_latents(
    rng: np.random.Generator, views: int, variant: str = "base", ranges: FactorRanges = FactorRanges()
) -> np.ndarray:
    """(views, 7|10) float64 latents of one object, drawn view by view from ``rng``.

    Row v uses the v-th block of uniforms, so the first k views do not depend on ``views``.
    """
    size = latent_size(variant)
    extra = 3 if variant in ("T", "OOD") else 0
    u = rng.random((views, 7 + extra))
    out = np.empty((views, size), dtype=np.float64)
    out[:, 3] = _scale(u[:, 0], ranges.floor_hue)
    out[:, 4] = _scale(u[:, 1], ranges.spot_theta)
    out[:, 5] = _scale(u[:, 2], ranges.spot_phi)
    out[:, 6] = _scale(u[:, 3], ranges.spot_hue)
    if variant == "OOD":
        magnitude = _scale(u[:, 4:7], ranges.ood_rotation)
        sign = np.where(u[:, 7:10] < 0.5, -1.0, 1.0)
        out[:, 0:3] = sign * magnitude
    else:
        out[:, 0:3] = _scale(u[:, 4:7], ranges.rotation)
    if variant == "T":
        out[:, 7:10] = _scale(u[:, 7:10], ranges.translation)
    return out


def orbit_latents(
    rng: np.random.Generator,
    factor: str,
    steps: int,
    variant: str = "base",
    ranges: FactorRanges = FactorRanges(),
) -> np.ndarray:
    """(steps, 7|10) latents where ``factor`` runs over an even grid and every other factor is fixed.

    The fixed values are one draw of :func:`sample_latents`; the grid is ``linspace(low, high, steps)``
    over the factor's range (both ends included).
    """
    size = latent_size(variant)
    if factor not in FACTORS[:size]:
        valid = ", ".join(FACTORS[:size])
        raise ConfigError(
            f"render.orbit_factor={factor!r} is not a factor of variant {variant}; valid: {valid}"
        )
    if steps < 1:
        raise ConfigError(f"render.views={steps} must be >= 1 for an orbit")
    base = sample_latents(rng, 1, variant, ranges)[0]
    out = np.repeat(base[None, :], steps, axis=0)
    lo, hi = ranges.of(factor, variant)
    out[:, FACTORS.index(factor)] = np.linspace(lo, hi, steps)
    return out
