"""Named presets of the evaluation section (``sie eval --preset quick|paper``).

``paper`` is the reference protocol: probes trained 300 epochs with Adam (lr 1e-3, wd 0, batch 256),
an MLP 1024-1024 for regressions, one seed. ``quick`` keeps every definition and shortens only the
probe schedule to 20 epochs, for smoke tests, demos and CPU runs; its numbers are lower bounds of
the paper protocol's and are labelled with the preset in results.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sie.config import (
    Config,
    EvalConfig,
    _suggest,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config_file,
    validate,
)
from sie.errors import ConfigError

__all__ = ["EVAL_PRESETS", "eval_preset", "resolve_eval_config"]

EVAL_PRESETS: dict[str, EvalConfig] = {
    "paper": EvalConfig(),
    "quick": dataclasses.replace(EvalConfig(), probe_epochs=20),
}


def eval_preset(name: str) -> EvalConfig:
    """The named eval preset; an unknown name is a ConfigError listing the valid ones."""
    try:
        return EVAL_PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"--preset {name!r}: unknown eval preset; valid: {', '.join(sorted(EVAL_PRESETS))}"
            f"{_suggest(name, EVAL_PRESETS)}"
        ) from None


def resolve_eval_config(
    run_cfg: Config,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> EvalConfig:
    """The eval settings for ``sie eval``: run's eval section (or ``preset``) -> ``--config`` -> ``--set`` -> flags.

    Only the ``eval`` section may change: the model and data sections must stay those the checkpoint
    was trained with, so a YAML file or ``--set`` key outside ``eval.`` is a ConfigError. ``flags``
    maps ``eval.KEY`` to a value (None = not given).
    """
    cfg = dataclasses.replace(run_cfg, eval=eval_preset(preset) if preset else run_cfg.eval)
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, Mapping) or set(loaded) - {"eval"}:
            raise ConfigError(
                f"--config {path}: sie eval reads only an 'eval:' section; found {sorted(loaded)}"
            )
        cfg = load_config_file(path, base=cfg)
    foreign = [item for item in overrides if not item.startswith("eval.")]
    if foreign:
        raise ConfigError(
            f"--set {foreign[0]!r}: sie eval changes only eval.* keys (the model and data come from the run)"
        )
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    given = {k.split(".", 1)[1]: v for k, v in (flags or {}).items() if v is not None}
    if given:
        merged = {**config_to_dict(cfg.eval), **given}
        flag_names = ", ".join("--" + k.replace("_", "-") for k in given)
        cfg = dataclasses.replace(cfg, eval=config_from_dict(merged, source=flag_names, cls=EvalConfig))
    return validate(cfg, "sie eval").eval
