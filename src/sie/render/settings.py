"""From the ``render`` config section to what the generator needs: presets, ranges, render settings.

``sie render --preset`` names a *render size* preset (not a training preset):

=====  =======  ==================================  =====  ====  ===
name   classes  objects per class                   views  px    spp
=====  =======  ==================================  =====  ====  ===
tiny   5        6                                   6      32    2
mini   10       100                                 20     32    2
small  10       20                                  10     64    2
full   55       3DIEBench's exact counts (52,472)   50     256   4
=====  =======  ==================================  =====  ====  ===

``mini`` (zoomed camera, field of view 0.42 rad) equals the ``cpu`` training preset's render section:
20,000 images that render in under a minute, on which rotation becomes learnable within minutes of CPU
training. ``small`` has the ``cpu-small`` preset's sizes; ``full`` is the 3DIEBench size
(41,920 train + 10,552 val objects, 2,623,600 images).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sie.config import CPU, Config, RenderConfig, _suggest, resolve_config
from sie.errors import ConfigError
from sie.render.backends.base import RenderSettings
from sie.render.latents import FACTORS, FactorRanges, latent_size
from sie.render.scene import SceneSpec

__all__ = [
    "RENDER_PRESETS",
    "check_render_config",
    "factor_ranges",
    "render_settings",
    "resolve_render_config",
    "scene_spec",
]

RENDER_PRESETS: dict[str, RenderConfig] = {
    "tiny": RenderConfig(classes=5, objects_per_class=6, views=6, size=32, samples_per_pixel=2),
    "mini": CPU.render,
    "small": RenderConfig(classes=10, objects_per_class=20, views=10, size=64, samples_per_pixel=2),
    "full": RenderConfig(class_sizes="3diebench"),
}
"""Render size presets of ``sie render --preset``."""


def _pair(cfg: RenderConfig, name: str) -> tuple[float, float]:
    value = getattr(cfg, f"{name}_range")
    if len(value) != 2:
        raise ConfigError(f"render.{name}_range={list(value)} must be two numbers [low, high]")
    return (float(value[0]), float(value[1]))


def factor_ranges(cfg: RenderConfig) -> FactorRanges:
    """The latent sampling ranges of ``cfg`` (checked)."""
    ranges = FactorRanges(
        rotation=_pair(cfg, "rotation"),
        floor_hue=_pair(cfg, "floor_hue"),
        spot_theta=_pair(cfg, "spot_theta"),
        spot_phi=_pair(cfg, "spot_phi"),
        spot_hue=_pair(cfg, "spot_hue"),
        translation=_pair(cfg, "translation"),
        ood_rotation=_pair(cfg, "ood_rotation"),
    )
    ranges.check()
    return ranges


def scene_spec(cfg: RenderConfig) -> SceneSpec:
    """The scene of ``cfg``: 3DIEBench's, with the configured field of view."""
    return SceneSpec(field_of_view=cfg.field_of_view)


def render_settings(cfg: RenderConfig) -> RenderSettings:
    """Image formation settings of ``cfg``."""
    return RenderSettings(size=cfg.size, samples_per_pixel=cfg.samples_per_pixel, antialias=cfg.antialias)


def check_render_config(cfg: RenderConfig, where: Callable[[str], str] | None = None) -> RenderConfig:
    """Refuse render settings that cannot work, naming the key; returns ``cfg``.

    ``where`` maps a dotted key to the flag or file that set it, prefixed to the message.
    """

    def refuse(key: str, message: str) -> ConfigError:
        return ConfigError(f"{where(key)}: {message}" if where else message)

    if cfg.views < 1:
        raise refuse("render.views", f"render.views={cfg.views} must be >= 1")
    if cfg.size < 8:
        raise refuse("render.size", f"render.size={cfg.size} must be >= 8 px")
    if cfg.samples_per_pixel < 1:
        raise refuse(
            "render.samples_per_pixel", f"render.samples_per_pixel={cfg.samples_per_pixel} must be >= 1"
        )
    if not 1 <= cfg.jpeg_quality <= 100:
        raise refuse("render.jpeg_quality", f"render.jpeg_quality={cfg.jpeg_quality} must be in [1, 100]")
    if cfg.workers < 0:
        raise refuse("render.workers", f"render.workers={cfg.workers} must be >= 0 (0 = all cores)")
    size = latent_size(cfg.variant)
    if cfg.orbit_factor and cfg.orbit_factor not in FACTORS[:size]:
        valid = ", ".join(FACTORS[:size])
        raise refuse(
            "render.orbit_factor",
            f"render.orbit_factor={cfg.orbit_factor!r} is not a factor of variant {cfg.variant}; valid: {valid}",
        )
    if not 0.05 <= cfg.field_of_view <= 2.5:
        raise refuse(
            "render.field_of_view",
            f"render.field_of_view={cfg.field_of_view} rad is outside [0.05, 2.5] (3DIEBench: 0.691111)",
        )
    try:
        factor_ranges(cfg)
    except ConfigError as exc:
        key = str(exc).split("=", 1)[0]
        raise refuse(key, str(exc)) from None
    return cfg


def resolve_render_config(
    preset: str = "small",
    config_file: str | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    flag_names: Mapping[str, str] | None = None,
) -> Config:
    """Render preset -> ``--config`` file -> ``--set`` overrides -> named flags (``render.*`` keys, None = unset).

    :func:`sie.config.resolve_config` with a render preset as its base; only the render section is
    validated (the other sections keep the ``paper`` defaults and are not read by the renderer).
    """
    if preset not in RENDER_PRESETS:
        raise ConfigError(
            f"--preset {preset!r}: unknown render preset; valid: {', '.join(RENDER_PRESETS)}"
            f"{_suggest(preset, RENDER_PRESETS)}"
        )
    return resolve_config(
        config_file=config_file,
        overrides=overrides,
        flags=flags,
        base=Config(render=RENDER_PRESETS[preset]),
        base_source=f"--preset {preset}",
        flag_names=flag_names,
        sections=("render",),
        command="sie render",
    )
