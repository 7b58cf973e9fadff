"""The training loop: build -> steps -> periodic work, top to bottom.

* **Build**: process group (torchrun environment), seed, data (``sie.data``), method
  (``sie.methods.build_method``), online probes, SyncBatchNorm + DDP, optimiser, GradScaler (fp16
  only), and, with ``resume``, every state from ``RUN/checkpoint.pt``.
* **Step**: ``lr = lr_at(step)``; forward under autocast (the method computes its losses in fp32);
  the online probes on the detached representations; backward, optimiser step, the method's
  ``on_step_end`` hook. No step waits on the device: a non-finite loss is recorded on the device and
  read every :data:`AGREE_EVERY` steps and before every log record and checkpoint; with several
  processes, the ranks agree on "a stop signal arrived" and "a checkpoint is due" at those steps too.
* **Periodic**: a ``metrics.jsonl`` record every ``train.log_every_s`` seconds (every step when 0),
  a checkpoint every ``train.checkpoint_every_min`` minutes and at each epoch end (with the
  backbone export next to it), and a graceful stop on SIGINT/SIGTERM or at ``max_steps``.

The build phase lives in :mod:`sie.engine.build`, the run's state and its files in :mod:`sie.engine.run`.

Exact resume: a checkpoint stores the position inside the epoch; the resumed run rebuilds the
epoch's loader (deterministic in seed, epoch and object index), skips the batches already
consumed; the RNG states are restored as they were when the checkpoint was written.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from sie.checkpoint import CHECKPOINT_FILENAME
from sie.config import TRAIN_SECTIONS, Config, validate
from sie.device import autocast
from sie.engine.build import build_run
from sie.engine.launch import all_reduce_sum, init_distributed, shutdown
from sie.engine.metrics import WindowMeter, peak_memory_mb
from sie.engine.optim import set_lr
from sie.engine.run import (
    TrainingRun,
    check_losses_finite,
    finish_run,
    record_nonfinite_loss,
    save_training_state,
    write_run_info,
)
from sie.engine.signals import StopRequest
from sie.log import format_duration, get_logger
from sie.methods.base import StepProgress
from sie.seeding import derive_seed

__all__ = ["train"]

log = get_logger(__name__)

AGREE_EVERY = 16
"""Steps between two host reads of the non-finite-loss flag (and, with several processes, between two
agreements on stop and checkpoint). Reading a device value every step would make the host wait for
the device each step; a non-finite loss found this way is reported with the step it happened at."""


def train(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    allow_config_change: bool = False,
    max_steps: int | None = None,
) -> Path:
    """Pre-train ``cfg.model.method`` on ``cfg.data.root``; write the run directory ``out``; return it.

    Args:
        cfg: the resolved configuration (``train.batch_size`` is the global batch).
        out: run directory: config.yaml, checkpoint.pt, backbone.safetensors, metrics.jsonl, run.json.
        resume: continue from ``out/checkpoint.pt``; a config that differs from the saved one is
            refused (listing the keys) unless ``allow_config_change``, which records the change.
        allow_config_change: see ``resume``.
        max_steps: stop after this global step as if interrupted (checkpoint written, resumable).

    Launch several processes with ``torchrun``; rank and device come from its environment.
    A stop signal (SIGINT, SIGTERM) finishes the current step, checkpoints and returns normally.

    Raises:
        NonFiniteLoss: a loss became NaN/inf (the last good checkpoint is kept).
        UsageError / ConfigError: bad data, config or run directory.
    """
    cfg = validate(cfg, sections=TRAIN_SECTIONS)
    out = Path(out)
    # train.deterministic and cuDNN autotuning switch process-wide torch flags; give the caller back
    # the ones it had.
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_benchmark_before = torch.backends.cudnn.benchmark
    ctx = init_distributed(cfg.train.device)
    try:
        with StopRequest() as stop:
            run = build_run(cfg, out, ctx, resume=resume, allow_config_change=allow_config_change)
            try:
                _loop(run, stop, max_steps)
            except BaseException as exc:
                interrupted = isinstance(exc, KeyboardInterrupt) or stop.aborted
                _record_failure(run, "interrupted" if interrupted else f"failed: {type(exc).__name__}: {exc}")
                if interrupted and not isinstance(exc, KeyboardInterrupt):
                    # A second Ctrl-C inside torch.save surfaces as torch's RuntimeError: still an interrupt.
                    raise KeyboardInterrupt from exc
                raise
            finally:
                if run.metrics is not None:
                    run.metrics.close()
    finally:
        shutdown(ctx)
        torch.use_deterministic_algorithms(deterministic_before, warn_only=warn_only_before)
        torch.backends.cudnn.benchmark = cudnn_benchmark_before
    return out


def _record_failure(run: TrainingRun, status: str) -> None:
    """Write ``status`` to run.json where it can be written; never hide the error being raised."""
    try:
        write_run_info(run, status=status.strip(), in_place_fallback=True)
    except Exception as exc:  # e.g. the run directory became read-only: the original error matters more
        log.warning("could not record %r in %s: %s", status.strip(), run.out / "run.json", exc)


# ---- steps and periodic work ---------------------------------------------------------------------


def _epoch_batches(loader: Any, seed: int, epoch: int, skip: int) -> Iterator[Any]:
    """The epoch's batches after the first ``skip`` (already trained on before an interruption).

    Creating a DataLoader iterator draws worker seeds from the global torch RNG; doing it under a
    forked RNG seeded by (seed, epoch) keeps the global stream independent of when iterators are
    created (so a resumed run and an uninterrupted one see the same stream) while giving each epoch
    its own worker seeds. The loader's own draws depend only on (seed, epoch, object index).
    """
    skip_batches = getattr(loader, "skip_batches", None)
    if skip and skip_batches is not None:
        skip_batches(skip)  # the loader leaves them out unread
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "loader", epoch))
        iterator: Iterator[Any] = iter(loader)
    if skip_batches is None:
        for _ in range(skip):
            next(iterator)
    return iterator


def _loop(run: TrainingRun, stop: StopRequest, max_steps: int | None) -> None:
    cfg, ctx = run.cfg, run.ctx
    if run.step >= run.total_steps or (max_steps is not None and run.step >= max_steps):
        log.info("nothing to do: the run is at step %d of %d", run.step, run.total_steps)
        finish_run(run, "completed" if run.step >= run.total_steps else f"stopped at max_steps={max_steps}")
        return
    # This invocation's goal: the run's end, or --max-steps (so the ETA is for what runs now).
    target = run.total_steps if max_steps is None else min(run.total_steps, max_steps)
    clock = _Clock(first_step=run.step, target=target, started=time.monotonic())
    progress = tqdm(
        total=target,
        initial=run.step,
        unit="step",
        dynamic_ncols=True,
        disable=None if ctx.is_main else True,  # None: off when stderr is not a terminal
    )
    meter = WindowMeter()
    last_log = last_checkpoint = time.monotonic()
    stop_reason: str | None = None
    try:
        while run.epoch < cfg.train.epochs and stop_reason is None:
            run.loader.set_epoch(run.epoch)
            batches = _epoch_batches(run.loader, cfg.train.seed, run.epoch, run.batches_in_epoch)
            epoch_finished = False
            while True:
                waited = time.perf_counter()
                batch = next(batches, None)
                waited = time.perf_counter() - waited
                if batch is None:
                    epoch_finished = True
                    break
                checkpoint_due = (
                    ctx.is_main and time.monotonic() - last_checkpoint >= 60 * cfg.train.checkpoint_every_min
                )
                values, stop_now, save_now = _step(run, batch, stop, checkpoint_due)
                meter.add_step(pairs=run.per_device_batch * ctx.world_size, data_wait_s=waited)
                meter.add_values(values)
                progress.update(1)
                if max_steps is not None and run.step >= max_steps:
                    stop_reason = f"max_steps={max_steps}"
                if stop_now:
                    stop_reason = f"signal {stop.signal_name or 'on another rank'}"
                if cfg.train.log_every_s <= 0 or time.monotonic() - last_log >= cfg.train.log_every_s:
                    _log_record(run, meter, progress, clock)
                    last_log = time.monotonic()
                if run.batches_in_epoch >= run.steps_per_epoch:
                    epoch_finished = True  # the epoch-end checkpoint below also serves a stop
                    break
                if save_now or stop_reason is not None:
                    save_training_state(run)
                    last_checkpoint = time.monotonic()
                if stop_reason is not None:
                    break
            if epoch_finished:
                run.epoch += 1
                run.batches_in_epoch = 0
                if meter.steps:
                    _log_record(run, meter, progress, clock)
                    last_log = time.monotonic()
                every = cfg.train.checkpoint_every_epochs
                if run.epoch % every == 0 or run.epoch >= cfg.train.epochs or stop_reason is not None:
                    save_training_state(run)
                    last_checkpoint = time.monotonic()
    finally:
        progress.close()
    if meter.steps:
        _log_record(run, meter, progress, clock)
    check_losses_finite(run)
    if stop_reason is None or run.step >= run.total_steps:
        finish_run(run, "completed")
        log.info("finished %d epochs (%d steps); run directory %s", cfg.train.epochs, run.step, run.out)
    else:
        finish_run(run, f"stopped ({stop_reason})")
        log.warning(
            "stopped (%s) at step %d, epoch %d; checkpoint saved to %s. Resume with: sie train --out %s --resume",
            stop_reason,
            run.step,
            run.epoch,
            run.out / CHECKPOINT_FILENAME,
            run.out,
        )


def _step(
    run: TrainingRun, batch: Any, stop: StopRequest, checkpoint_due: bool
) -> tuple[dict[str, Tensor], bool, bool]:
    """One optimiser step. Returns (values to log, stop now, checkpoint now), agreed by all ranks."""
    cfg, ctx = run.cfg, run.ctx
    lr = run.lr(run.step)
    set_lr(run.optimizer, lr)
    batch = batch.to(ctx.device, non_blocking=True)
    run_probes = run.online is not None and run.step % cfg.train.online_eval_every == 0
    with autocast(run.precision, ctx.device):
        output = run.model(batch)
        total = output.loss.float()
        probe_metrics: dict[str, Tensor] = {}
        if run_probes:
            assert run.online is not None
            probe_loss, probe_metrics = run.online(output.representations, batch.labels, batch.transforms)
            total = total + probe_loss.float()
    values: dict[str, Tensor] = {"loss": output.loss.detach(), **output.terms, **probe_metrics}
    record_nonfinite_loss(run, total.detach())
    agree = (run.step + 1) % AGREE_EVERY == 0
    stop_now, save_now = stop.requested, checkpoint_due
    if ctx.distributed:
        # The loss terms are averaged over ranks every step (an all-reduce the host does not wait
        # for), so the logged values are those of the global batch (equal shares: the mean of the
        # ranks' means is the global mean). The probes' accuracy and R² stay rank 0's.
        averaged = sorted(k for k in values if k == "loss" or k.startswith("loss/"))  # same on every rank
        terms = torch.stack([values[k].detach().float().reshape(()).to(ctx.device) for k in averaged])
        means = all_reduce_sum(terms, ctx) / ctx.world_size
        values.update({k: means[i] for i, k in enumerate(averaged)})
        if agree:
            # Every AGREE_EVERY steps the ranks learn whether any of them saw a stop signal or (rank
            # 0's clock) a due checkpoint: all ranks then stop or save at the same step.
            flags = all_reduce_sum(torch.tensor([float(stop_now), float(save_now)], device=ctx.device), ctx)
            stop_now, save_now = (v > 0 for v in flags.tolist())
        else:
            stop_now = save_now = False
    if agree or stop_now or save_now:
        check_losses_finite(run, values)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(total).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.method.on_step_end(StepProgress(run.step, run.total_steps, run.epoch, cfg.train.epochs))
    run.step += 1
    run.batches_in_epoch += 1
    values["lr"] = torch.tensor(lr)
    return values, stop_now, save_now


@dataclass(frozen=True)
class _Clock:
    """Where this invocation started and where it stops, for the elapsed time and the ETA."""

    first_step: int
    target: int
    started: float

    def elapsed_and_left(self, step: int) -> tuple[float, float]:
        elapsed = time.monotonic() - self.started
        done = step - self.first_step
        left = (self.target - step) * elapsed / done if done > 0 else float("nan")
        return elapsed, max(0.0, left)


def _log_record(run: TrainingRun, meter: WindowMeter, progress: tqdm, clock: _Clock) -> None:
    if not run.ctx.distributed:  # ranks log on their own clocks: no collective here
        check_losses_finite(run)
    summary = meter.summary()
    meter.reset()
    if not run.ctx.is_main or run.metrics is None:
        return
    record: dict[str, Any] = {"step": run.step, "epoch": run.epoch, "lr": summary.pop("lr", run.lr(run.step))}
    record.update(summary)
    record["peak_mem_mb"] = round(peak_memory_mb(run.ctx.device), 1)
    record["time_s"] = round(run.wall_time_s + time.monotonic() - run.started, 3)
    run.metrics.write(record)
    progress.set_postfix(loss=f"{record.get('loss', float('nan')):.4g}", refresh=False)
    if progress.disable:
        elapsed, left = clock.elapsed_and_left(run.step)
        log.info(
            "step %d/%d epoch %d loss %.5g, %.1f pairs/s, data wait %.0f%%, %s elapsed, about %s left",
            run.step,
            clock.target,
            run.epoch,
            record.get("loss", float("nan")),
            record["pairs_per_s"],
            100 * record["data_wait_frac"],
            format_duration(elapsed),
            format_duration(left),
        )
