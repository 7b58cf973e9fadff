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

from sie.config import Config, EvalConfig, _suggest, resolve_config
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
    flag_names: Mapping[str, str] | None = None,
) -> EvalConfig:
    """The eval settings for ``sie eval``: run's eval section (or ``preset``) -> ``--config`` -> ``--set`` -> flags.

    :func:`sie.config.resolve_config` with the run's config as its base. Only the ``eval`` section may
    change: the model and data sections must stay those the checkpoint was trained with, so a YAML
    file or ``--set`` key outside ``eval.`` is a ConfigError. ``flags`` maps ``eval.KEY`` to a value
    (None = not given).
    """
    base = dataclasses.replace(run_cfg, eval=eval_preset(preset) if preset else run_cfg.eval)
    cfg = resolve_config(
        config_file=config_file,
        overrides=overrides,
        flags=flags,
        base=base,
        base_source=f"--preset {preset}" if preset else "the run's config.yaml",
        flag_names=flag_names,
        sections=("eval",),
        editable=("eval",),
        command="sie eval",
    )
    return cfg.eval
