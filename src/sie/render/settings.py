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

import re
from typing import Any

from sie.config import CPU, Config, RenderConfig, config_from_dict, config_to_dict, load_config_file, validate
from sie.config import apply_overrides as apply_config_overrides
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


def check_render_config(cfg: RenderConfig) -> RenderConfig:
    """Refuse render settings that cannot work, naming the key; returns ``cfg``."""
    if cfg.views < 1:
        raise ConfigError(f"render.views={cfg.views} must be >= 1")
    if cfg.size < 8:
        raise ConfigError(f"render.size={cfg.size} must be >= 8 px")
    if cfg.samples_per_pixel < 1:
        raise ConfigError(f"render.samples_per_pixel={cfg.samples_per_pixel} must be >= 1")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise ConfigError(f"render.jpeg_quality={cfg.jpeg_quality} must be in [1, 100]")
    if cfg.workers < 0:
        raise ConfigError(f"render.workers={cfg.workers} must be >= 0 (0 = all cores)")
    size = latent_size(cfg.variant)
    if cfg.orbit_factor and cfg.orbit_factor not in FACTORS[:size]:
        valid = ", ".join(FACTORS[:size])
        raise ConfigError(
            f"render.orbit_factor={cfg.orbit_factor!r} is not a factor of variant {cfg.variant}; valid: {valid}"
        )
    if not 0.05 <= cfg.field_of_view <= 2.5:
        raise ConfigError(
            f"render.field_of_view={cfg.field_of_view} rad is outside [0.05, 2.5] (3DIEBench: 0.691111)"
        )
    factor_ranges(cfg)
    return cfg


_FLAG_OF_KEY = {"class_sizes": "objects_per_class", "orbit_factor": "orbit"}
"""Render keys set by a flag of another name (``--objects-per-class N`` also sets ``class_sizes``)."""

_UNSET = "\x00render flags"
"""Placeholder ``source`` of the flag layer: replaced by the flag that set the key at fault."""

_RENDER_KEY = re.compile(r"\brender\.([a-z_]+)")


def _flag_name(key: str) -> str:
    return "--" + _FLAG_OF_KEY.get(key, key).replace("_", "-")


def _blame(exc: ConfigError, origins: dict[str, str], default: str) -> ConfigError:
    """``exc`` with its message led by the flag, ``--set`` item or file that set the key it names."""
    message = str(exc)
    if message.startswith(_UNSET + ": "):
        message = message[len(_UNSET) + 2 :]
    elif not message.startswith("render."):  # already names its source (a file, --set, --preset)
        return exc
    found = _RENDER_KEY.search(message)
    origin = origins.get(found.group(1), default) if found else default
    return ConfigError(f"{origin}: {message}")


def resolve_render_config(
    preset: str = "full",
    config_file: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    flags: dict[str, Any] | None = None,
) -> Config:
    """Render preset -> ``--config`` file -> ``--set`` overrides -> named flags (``render.*`` keys, None = unset).

    The other sections keep the ``paper`` defaults; the whole config is validated. A refusal is led by
    the one flag, ``--set`` item or file that set the key at fault (``--preset NAME`` for keys none set).
    """
    if preset not in RENDER_PRESETS:
        raise ConfigError(f"--preset {preset!r}: render presets are {', '.join(RENDER_PRESETS)}")
    cfg = Config(render=RENDER_PRESETS[preset])
    default = f"--preset {preset}"
    origins: dict[str, str] = {}
    if config_file is not None:
        cfg = load_config_file(config_file, base=cfg)
        default = str(config_file)  # keys the file does not set keep the preset's (valid) values
    if overrides:
        cfg = apply_config_overrides(cfg, list(overrides))
        for item in overrides:
            key = item.partition("=")[0].strip()
            if key.startswith("render."):
                origins[key.removeprefix("render.")] = f"--set {item}"
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    try:
        if given:
            data = config_to_dict(cfg)
            for key, value in given.items():
                data["render"][key] = value
                origins[key] = _flag_name(key)
            cfg = config_from_dict(data, source=_UNSET)
        validate(cfg, _UNSET)
        check_render_config(cfg.render)
    except ConfigError as exc:
        raise _blame(exc, origins, default) from None
    return cfg
