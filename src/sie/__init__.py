"""sie: self-supervised learning of split invariant-equivariant representations.

The public API is re-exported here as the stages land; see README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_backbone", "train"]

if TYPE_CHECKING:
    from torch import nn

    from sie.config import Config


# The functions below import their stage on first call, so that ``import sie`` stays light.


def train(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    allow_config_change: bool = False,
    max_steps: int | None = None,
) -> Path:
    """Pre-train ``cfg.model.method`` on ``cfg.data.root`` into the run directory ``out`` (see docs/training.md).

    Once ``sie.train`` (the package) has been imported, ``sie.train`` is that package, which is
    callable with the same arguments.
    """
    from sie.train.loop import train as run_training

    return run_training(cfg, out, resume=resume, allow_config_change=allow_config_change, max_steps=max_steps)


def load_backbone(path: str | Path, map_location: Any = "cpu") -> nn.Module:
    """The backbone stored in a ``backbone.safetensors`` file (from ``sie train``), in eval mode."""
    from sie.checkpoint import load_backbone as load

    result: nn.Module = load(path, map_location=map_location)
    return result
