"""sie: self-supervised learning of split invariant-equivariant representations.

The public API is re-exported here as the stages land; see README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate", "list_methods", "load_backbone", "train"]

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

    The engine lives in :mod:`sie.engine`; this function stays ``sie.train`` whatever is imported.
    """
    from sie.engine.loop import train as run_training

    return run_training(cfg, out, resume=resume, allow_config_change=allow_config_change, max_steps=max_steps)


def load_backbone(path: str | Path, map_location: Any = "cpu") -> nn.Module:
    """The backbone stored in a ``backbone.safetensors`` file (from ``sie train``), in eval mode."""
    from sie.checkpoint import load_backbone as load

    result: nn.Module = load(path, map_location=map_location)
    return result


def evaluate(run_dir: str | Path, data_root: str | Path, cfg: Any = None, **kwargs: Any) -> Path:
    """Run the evaluation protocol on a run directory; return ``RUN/eval/results.json`` (see docs/evaluation.md)."""
    from sie.eval.run import evaluate as run_evaluation

    return run_evaluation(run_dir, data_root, cfg, **kwargs)


def list_methods() -> list[tuple[str, str]]:
    """``[(name, one-line description)]`` of every registered method."""
    from sie.methods import list_methods as registered

    return registered()
