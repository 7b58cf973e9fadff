"""A training run in memory (what the loop works on) and on disk (run.json, checkpoint, backbone export)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from sie.checkpoint import (
    BACKBONE_FILENAME,
    CHECKPOINT_FILENAME,
    RUN_INFO_FILENAME,
    atomic_write,
    export_backbone,
    save_checkpoint,
)
from sie.config import Config, config_to_dict
from sie.device import Precision
from sie.engine.faults import NonFiniteLoss, NonFiniteState, nonfinite_entries, nonfinite_terms
from sie.engine.launch import DistContext, all_reduce_max, all_reduce_sum
from sie.engine.metrics import MetricsLog
from sie.engine.schedule import lr_at, warmup_steps_for
from sie.engine.state import capture_rng_state
from sie.errors import WorkFailed
from sie.methods.base import Method

__all__ = [
    "TrainingRun",
    "finish_run",
    "kept_checkpoint",
    "save_training_state",
    "training_state_nonfinite",
    "unwrap",
    "write_run_info",
]


@dataclass
class TrainingRun:
    """Everything the loop needs, built once by :func:`sie.engine.build.build_run`."""

    cfg: Config
    out: Path
    ctx: DistContext
    precision: Precision
    loader: Any
    steps_per_epoch: int
    per_device_batch: int
    method: Method  # unwrapped: what is saved and exported
    model: nn.Module  # what is called: the method, or DDP around it
    online: nn.Module | None  # the online probes (DDP-wrapped when distributed)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    info: dict[str, Any]  # run.json contents
    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    wall_time_s: float = 0.0
    last_checkpoint_step: int | None = None
    first_nonfinite_step: Tensor | None = None  # on the device; -1 while every loss was finite
    metrics: MetricsLog | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def total_steps(self) -> int:
        return self.cfg.train.epochs * self.steps_per_epoch

    def lr(self, step: int) -> float:
        o = self.cfg.optim
        return lr_at(
            step,
            base_lr=o.lr,
            total_steps=self.total_steps,
            schedule=o.schedule,
            warmup_steps=warmup_steps_for(o.warmup_epochs, self.steps_per_epoch),
            final_lr=o.final_lr,
        )


def write_run_info(run: TrainingRun, *, status: str, in_place_fallback: bool = False) -> None:
    """Update run.json (rank 0; atomic).

    Args:
        in_place_fallback: where the atomic write fails (a read-only run directory allows no
            temporary file, but its run.json may still be writable), overwrite run.json in place.

    Raises:
        WorkFailed: run.json could not be written (one line naming it).
    """
    if not run.ctx.is_main:
        return
    run.info.update(
        {
            "status": status,
            "step": run.step,
            "epoch": run.epoch,
            "wall_time_s": round(run.wall_time_s + time.monotonic() - run.started, 3),
        }
    )
    path = run.out / RUN_INFO_FILENAME
    payload = (json.dumps(run.info, indent=2) + "\n").encode()
    try:
        with atomic_write(path) as handle:
            handle.write(payload)
    except OSError as exc:
        if in_place_fallback and path.is_file():
            try:
                with open(path, "r+b") as handle:
                    handle.truncate(0)
                    handle.write(payload)
                return
            except OSError:
                pass
        raise WorkFailed(f"could not write {path}: {exc.strerror or exc}") from exc


def kept_checkpoint(run: TrainingRun) -> str:
    """What is on disk after a failure: the last checkpoint this run wrote or resumed from."""
    if run.last_checkpoint_step is None:
        return "no checkpoint had been written yet"
    return f"the last good checkpoint (step {run.last_checkpoint_step}) is kept in {run.out / CHECKPOINT_FILENAME}"


def training_state_nonfinite(run: TrainingRun) -> list[str]:
    """Names of what a checkpoint would save that holds NaN or inf: this rank's view, all tensors.

    Covers the method's parameters and buffers (EMA targets included: they are parameters with
    ``requires_grad=False``), the online probes, the optimiser state and the GradScaler.
    """
    parts: dict[str, Any] = {
        "model": run.method.state_dict(),
        "optimizer": run.optimizer.state_dict()["state"],
        "scaler": run.scaler.state_dict(),
    }
    if run.online is not None:
        parts["online_eval"] = unwrap(run.online).state_dict()
    return nonfinite_entries(parts)


def _check_finite(run: TrainingRun) -> None:
    """Refuse to checkpoint non-finite state; every rank checks and all agree (one all-reduce)."""
    bad = training_state_nonfinite(run)
    if run.ctx.distributed:
        flag = torch.tensor([float(bool(bad))], device=run.ctx.device)
        if not all_reduce_max(flag, run.ctx).item():
            return
    elif not bad:
        return
    shown = (
        ", ".join(bad[:6]) + (f", ... ({len(bad)} in all)" if len(bad) > 6 else "")
        if bad
        else "on another rank"
    )
    raise NonFiniteState(
        f"non-finite weights or optimiser state after step {run.step} (epoch {run.epoch}): {shown}; "
        f"not saved, {kept_checkpoint(run)}. Try a lower optim.lr, train.precision=fp32 or a larger "
        "train.batch_size"
    )


def record_nonfinite_loss(run: TrainingRun, total: Tensor) -> None:
    """Remember, on the device, the first step whose loss was NaN or inf (no host synchronisation)."""
    if run.first_nonfinite_step is None:
        run.first_nonfinite_step = torch.full((), -1, dtype=torch.int64, device=total.device)
    seen = run.first_nonfinite_step
    first_now = torch.logical_and(~torch.isfinite(total), seen < 0)
    run.first_nonfinite_step = torch.where(first_now, torch.full_like(seen, run.step), seen)


def check_losses_finite(run: TrainingRun, values: dict[str, Tensor] | None = None) -> None:
    """Raise :class:`NonFiniteLoss` if any rank's loss was NaN or inf since the run (re)started.

    Called every ``sie.engine.loop.AGREE_EVERY`` steps and before every log record, checkpoint and the end of the
    run, so that nothing computed after a non-finite loss is ever logged or saved. One host read (and,
    with several processes, one all-reduce: every rank must take part).
    """
    seen = run.first_nonfinite_step
    if seen is None:
        return
    local = seen.reshape(1)
    if run.ctx.distributed:
        anywhere = all_reduce_sum((local >= 0).float(), run.ctx)
        bad_anywhere = bool(anywhere.item() > 0)
    else:
        bad_anywhere = bool(local.item() >= 0)
    if bad_anywhere:
        _raise_nonfinite(run, int(local.item()), values or {})


def _raise_nonfinite(run: TrainingRun, bad_step: int, values: dict[str, Tensor]) -> None:
    if bad_step < 0:
        at = f"on another rank (found at step {run.step})"
    else:
        at = f"at step {bad_step}" + ("" if bad_step == run.step else f" (found at step {run.step})")
    bad = nonfinite_terms({k: float(v) for k, v in values.items()}) if bad_step == run.step else []
    terms = f": {', '.join(bad)}" if bad else ""
    raise NonFiniteLoss(
        f"non-finite loss {at}{terms}; nothing computed since was logged or saved; {kept_checkpoint(run)}. "
        "Try a lower optim.lr, train.precision=fp32 or a larger train.batch_size"
    )


def save_training_state(run: TrainingRun) -> None:
    """Write checkpoint.pt and backbone.safetensors (rank 0; atomic) and update run.json.

    Raises:
        NonFiniteLoss: a loss since the run (re)started was NaN or inf; nothing is written.
        NonFiniteState: something it would save is NaN or inf; nothing is written.
    """
    check_losses_finite(run)
    _check_finite(run)
    if run.ctx.is_main:
        state = {
            "format": "sie-checkpoint-1",
            "model": run.method.state_dict(),
            "online_eval": unwrap(run.online).state_dict() if run.online is not None else None,
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(),
            "step": run.step,
            "epoch": run.epoch,
            "batches_in_epoch": run.batches_in_epoch,
            "steps_per_epoch": run.steps_per_epoch,
            "config": config_to_dict(run.cfg),
            "rng": capture_rng_state(run.ctx.device),
            "world_size": run.ctx.world_size,
            "wall_time_s": run.wall_time_s + time.monotonic() - run.started,
        }
        if state["online_eval"] is None:
            del state["online_eval"]
        save_checkpoint(run.out / CHECKPOINT_FILENAME, state)
        export_backbone(
            run.method,
            run.out / BACKBONE_FILENAME,
            run.cfg,
            metadata={"step": str(run.step), "epoch": str(run.epoch)},
        )
        run.last_checkpoint_step = run.step
        write_run_info(run, status="running")
    if run.ctx.distributed:
        dist.barrier()  # no rank runs ahead while rank 0 writes; if rank 0 fails, its exit ends the barrier
    run.last_checkpoint_step = run.step


def finish_run(run: TrainingRun, status: str) -> None:
    write_run_info(run, status=status)
    if run.ctx.distributed:
        dist.barrier()


def unwrap(module: nn.Module) -> nn.Module:
    inner = getattr(module, "module", module)
    assert isinstance(inner, nn.Module)
    return inner
