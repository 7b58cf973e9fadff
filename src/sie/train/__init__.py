"""The training engine: ``sie.train.train(cfg, out, ...)`` runs one explicit loop on CPU, CUDA or torchrun DDP."""

from __future__ import annotations

from sie.train.loop import train

__all__ = ["train"]
