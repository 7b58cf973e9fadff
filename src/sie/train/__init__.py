"""The training engine: ``sie.train.train(cfg, out, ...)`` runs one explicit loop on CPU, CUDA or torchrun DDP.

Importing this package replaces the lazy function ``sie.train`` by the package itself (Python sets
``sie.train`` to the submodule), so the package is made callable with the function's signature:
``sie.train(cfg, out)`` works before and after ``import sie.train``.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

from sie.train.loop import train

__all__ = ["train"]


class _CallableModule(types.ModuleType):
    def __call__(self, cfg: Any, out: str | Path, **kwargs: Any) -> Path:
        return train(cfg, out, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
