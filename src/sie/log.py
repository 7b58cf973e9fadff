"""Rank-aware logging: messages from rank 0 only, to stderr, one line each; never a bare print.

Rank comes from ``torch.distributed`` when it is initialised, else from the ``RANK`` environment
variable that torchrun sets, else 0.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["format_duration", "get_logger", "get_rank", "is_main_process", "setup_logging"]

_ROOT = "sie"


def get_rank() -> int:
    """This process's global rank (0 when not distributed)."""
    # torch.distributed can only be initialised in a process that imported it; not importing it
    # here keeps PyTorch (~2 s) out of processes that never use it, such as render workers.
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0: the only rank that logs, writes reports and shows progress bars."""
    return get_rank() == 0


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (pytest's capture and redirections swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _MainProcessOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return is_main_process() or record.levelno >= logging.ERROR


def setup_logging(level: int | str = logging.INFO) -> logging.Logger:
    """Configure the ``sie`` logger once: ``sie: message`` on stderr, rank 0 only (errors from all ranks)."""
    logger = logging.getLogger(_ROOT)
    logger.setLevel(level)
    if not any(getattr(h, "_sie_handler", False) for h in logger.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s sie: %(message)s", datefmt="%H:%M:%S"))
        handler.addFilter(_MainProcessOnly())
        handler._sie_handler = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    return logger


def get_logger(name: str) -> logging.Logger:
    """A child of the ``sie`` logger, e.g. ``get_logger(__name__)``."""
    if not name.startswith(_ROOT):
        name = f"{_ROOT}.{name}"
    return logging.getLogger(name)


def format_duration(seconds: float) -> str:
    """A duration people read: ``'45 s'``, ``'3 min 20 s'``, ``'2 h 05 min'``, ``'3 d 4 h'``."""
    if seconds != seconds or seconds == float("inf"):
        return "unknown"
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
