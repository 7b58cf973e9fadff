"""Training observability: ``metrics.jsonl``, optional TensorBoard, throughput and memory meters.

``metrics.jsonl`` gets one JSON object per record, written by rank 0 only::

    {"step": 120, "epoch": 3, "lr": 0.001, "loss": 21.4, "loss/inv": 0.21, ..., "probe/top1_full": 0.12,
     "pairs_per_s": 61.2, "data_wait_frac": 0.01, "step_time_s": 1.04, "peak_mem_mb": 2210.5,
     "steps": 10, "time_s": 130.2}

``step`` counts finished optimiser steps; loss terms and probe metrics are means over the ``steps``
steps since the previous record; ``pairs_per_s`` counts pairs of the global batch per second of
wall time; ``data_wait_frac`` is the fraction of that time spent waiting for the next batch;
``peak_mem_mb`` is the peak CUDA memory allocated on this device, or on CPU the peak resident set
size of the process. Non-finite numbers are written as ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sie.checkpoint import atomic_write
from sie.errors import ConfigError, WorkFailed

__all__ = [
    "METRICS_FILENAME",
    "MetricsLog",
    "WindowMeter",
    "peak_memory_mb",
    "reset_metrics",
    "truncate_metrics",
]

METRICS_FILENAME = "metrics.jsonl"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Appends records to ``RUN/metrics.jsonl`` (and TensorBoard scalars when enabled); rank 0 only."""

    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool = False) -> None:
        self.path = run_dir / METRICS_FILENAME
        self.enabled = enabled
        self._writer: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError(
                    "train.tensorboard=true needs the tensorboard package: pip install 'sie[tensorboard]'"
                ) from None
            self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: _jsonable(v) for k, v in record.items()}
        try:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(clean) + "\n")
        except OSError as exc:
            raise WorkFailed(f"could not write {self.path}: {exc.strerror or exc}") from exc
        if self._writer is not None:
            step = int(clean["step"])
            for key, value in clean.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(key, value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def reset_metrics(path: Path) -> None:
    """Empty ``path`` (a fresh start: no record of an earlier attempt may precede the new ones)."""
    if path.exists():
        path.write_text("")


def truncate_metrics(path: Path, max_step: int) -> int:
    """Drop records with ``step > max_step`` (written after the checkpoint a run resumes from).

    Returns the number of records removed. The file is rewritten atomically.
    """
    if not path.is_file():
        return 0
    kept: list[str] = []
    removed = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            step = json.loads(line).get("step", 0)
        except json.JSONDecodeError:  # a line cut short by a crash
            removed += 1
            continue
        if isinstance(step, int) and step > max_step:
            removed += 1
        else:
            kept.append(line)
    if removed:
        with atomic_write(path) as handle:
            handle.write("".join(line + "\n" for line in kept).encode())
    return removed


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on ``device`` since start, else the process's peak RSS, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


class WindowMeter:
    """Accumulates per-step numbers between two records; values stay on device until :meth:`summary`.

    Loss terms are summed as tensors so that logging costs no device synchronisation per step. A NaN
    value (a metric undefined for that step, e.g. R² on a batch of equal targets) is left out of its
    key's mean; the counts are device tensors too, for the same reason.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.pairs = 0
        self.data_wait_s = 0.0
        self.start = time.perf_counter()
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, Tensor] = {}

    def add_step(self, pairs: int, data_wait_s: float) -> None:
        self.steps += 1
        self.pairs += pairs
        self.data_wait_s += data_wait_s

    def add_values(self, values: Mapping[str, Tensor | float]) -> None:
        for key, value in values.items():
            tensor = value.detach().float() if isinstance(value, Tensor) else torch.tensor(float(value))
            defined = ~tensor.isnan()
            tensor = torch.where(defined, tensor, torch.zeros_like(tensor))
            if key in self._sums:
                self._sums[key] = self._sums[key] + tensor
                self._counts[key] = self._counts[key] + defined
            else:
                self._sums[key], self._counts[key] = tensor.clone(), defined.long()

    def summary(self) -> dict[str, float]:
        """Means of the accumulated values, pairs/s, data-wait fraction and mean step time."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out: dict[str, float] = {}
        for key, total in sorted(self._sums.items()):
            count = int(self._counts[key])
            if count:
                out[key] = float(total) / count
        out["pairs_per_s"] = self.pairs / elapsed
        out["data_wait_frac"] = self.data_wait_s / elapsed
        out["step_time_s"] = elapsed / max(self.steps, 1)
        out["steps"] = self.steps
        return out
