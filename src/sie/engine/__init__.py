"""The training engine: ``sie.engine.train(cfg, out, ...)`` runs one explicit loop on CPU, CUDA or torchrun DDP.

The public entry point is the function ``sie.train`` (which imports this package on first call).
"""

from __future__ import annotations

from sie.engine.loop import train

__all__ = ["train"]
