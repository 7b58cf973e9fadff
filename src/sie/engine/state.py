"""What a checkpoint holds besides weights: RNG states, position in the data, and the resume rules.

Everything here is tensors and primitive Python types, so checkpoints load with
``torch.load(weights_only=True)``. The numpy RNG state (a tuple holding an array) is stored as a
dict with a tensor; Python's as a list of ints.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from sie.config import Config, config_diff
from sie.errors import ConfigError

__all__ = [
    "RESUME_FREE_KEYS",
    "capture_rng_state",
    "format_config_changes",
    "restore_rng_state",
    "resume_config_changes",
]

RESUME_FREE_KEYS = frozenset(
    {"data.root", "data.num_workers", "train.log_every_s", "train.checkpoint_every_min"}
)
"""Keys that may differ on resume without ``--allow-config-change``: where the data lives, how many
loader workers read it, and how often the run logs and checkpoints. None of them changes a number
the run computes (the dataset's identity is checked separately through its manifest hash)."""


def capture_rng_state(device: torch.device) -> dict[str, Any]:
    """Python, numpy, torch CPU and (on CUDA) this device's generator states."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    """Inverse of :func:`capture_rng_state` (a CUDA state is restored only on a CUDA device)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def format_config_changes(changes: list[tuple[str, Any, Any]]) -> str:
    """``"model.sim_coeff: 10.0 -> 5.0; train.epochs: 2000 -> 3000"``."""
    return "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changes)


def resume_config_changes(
    saved: Config, requested: Config, *, allow_change: bool, run_dir: str
) -> list[tuple[str, Any, Any]]:
    """The differences between a run's saved config and the one asked for on resume.

    Returns every differing ``(key, saved, requested)``. Raises ConfigError listing them when any key
    outside :data:`RESUME_FREE_KEYS` differs and ``allow_change`` is False.
    """
    changes = config_diff(saved, requested)
    binding = [c for c in changes if c[0] not in RESUME_FREE_KEYS]
    if binding and not allow_change:
        raise ConfigError(
            f"--resume {run_dir}: the requested config differs from the run's config.yaml in "
            f"{len(binding)} key(s): {format_config_changes(binding)}; resume with the run's own config "
            "(drop those flags) or pass --allow-config-change to continue with the new values (recorded in run.json)"
        )
    return changes
