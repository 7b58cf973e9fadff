"""The training loop: build -> steps -> periodic work, top to bottom.

* **Build**: process group (torchrun environment), seed, data (``sie.data``), method
  (``sie.methods.build_method``), online probes, SyncBatchNorm + DDP, optimiser, GradScaler (fp16
  only), and, with ``resume``, every state from ``RUN/checkpoint.pt``.
* **Step**: ``lr = lr_at(step)``; forward under autocast (the method computes its losses in fp32);
  the online probes on the detached representations; one all-reduce so that every rank agrees on
  "a loss is non-finite", "a stop signal arrived" and "a checkpoint is due"; backward, optimiser
  step, the method's ``on_step_end`` hook.
* **Periodic**: a ``metrics.jsonl`` record every ``train.log_every_s`` seconds (every step when 0),
  a checkpoint every ``train.checkpoint_every_min`` minutes and at each epoch end (with the
  backbone export next to it), and a graceful stop on SIGINT/SIGTERM or at ``max_steps``.

Exact resume: a checkpoint stores the position inside the epoch; the resumed run rebuilds the
epoch's loader (deterministic in seed, epoch and object index), skips the batches already
consumed, and restores the RNG states at the point where they were captured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from sie import __version__
from sie.checkpoint import (
    BACKBONE_FILENAME,
    CHECKPOINT_FILENAME,
    RUN_INFO_FILENAME,
    _strict_load,
    atomic_write,
    export_backbone,
    load_checkpoint,
    save_checkpoint,
)
from sie.config import Config, config_from_dict, config_to_dict, save_config, validate
from sie.device import Precision, autocast, resolve_precision
from sie.errors import UsageError
from sie.log import get_logger
from sie.seeding import derive_seed, seed_everything
from sie.train.faults import NonFiniteLoss, nonfinite_terms
from sie.train.launch import (
    DistContext,
    all_reduce_max,
    init_distributed,
    per_device_batch_size,
    shutdown,
    wrap,
)
from sie.train.metrics import MetricsLog, WindowMeter, peak_memory_mb, truncate_metrics
from sie.train.online import OnlineEvaluator, rotation_target_dim
from sie.train.optim import build_optimizer, set_lr
from sie.train.schedule import lr_at, warmup_steps_for
from sie.train.signals import StopRequest
from sie.train.state import capture_rng_state, format_config_changes, restore_rng_state, resume_config_changes

__all__ = ["train"]

log = get_logger(__name__)


@dataclass
class _Run:
    """Everything the loop needs, built once by :func:`_build`."""

    cfg: Config
    out: Path
    ctx: DistContext
    precision: Precision
    loader: Any
    steps_per_epoch: int
    per_device_batch: int
    method: nn.Module  # unwrapped: what is saved and exported
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
    cfg = validate(cfg)
    out = Path(out)
    ctx = init_distributed(cfg.train.device)
    try:
        with StopRequest() as stop:
            run = _build(cfg, out, ctx, resume=resume, allow_config_change=allow_config_change)
            try:
                _loop(run, stop, max_steps)
            except BaseException as exc:
                _write_run_info(run, status=f"failed: {type(exc).__name__}: {exc}".strip())
                raise
            finally:
                if run.metrics is not None:
                    run.metrics.close()
    finally:
        shutdown(ctx)
    return out


# ---- build -------------------------------------------------------------------------------------


def _build(cfg: Config, out: Path, ctx: DistContext, *, resume: bool, allow_config_change: bool) -> _Run:
    from sie.data import make_train_loader, open_split, transform_dim
    from sie.methods import build_method

    checkpoint_path = out / CHECKPOINT_FILENAME
    state: dict[str, Any] | None = None
    changes: list[tuple[str, Any, Any]] = []
    previous_info: dict[str, Any] = {}
    if resume:
        if not checkpoint_path.is_file():
            raise UsageError(f"--resume: no {CHECKPOINT_FILENAME} in {out}; start a new run without --resume")
        state = load_checkpoint(checkpoint_path)
        saved_cfg = config_from_dict(state["config"], source=str(checkpoint_path))
        changes = resume_config_changes(saved_cfg, cfg, allow_change=allow_config_change, run_dir=str(out))
        info_path = out / RUN_INFO_FILENAME
        previous_info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    elif checkpoint_path.exists():
        raise UsageError(
            f"{out} already holds a {CHECKPOINT_FILENAME}; pass --resume to continue that run, "
            "or choose another --out"
        )

    seed_everything(cfg.train.seed, deterministic=cfg.train.deterministic)
    device = ctx.device
    precision = resolve_precision(cfg.train.precision, device)
    if device.type == "cuda" and not cfg.train.deterministic:
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels

    # Data: global batch -> per-device batch; the loader shards objects across ranks.
    if not cfg.data.root:
        raise UsageError(
            "no dataset given: pass --data ROOT (a 3DIEBench-layout directory or a packed store)"
        )
    source = open_split(cfg.data.root, "train", skip_bad=cfg.data.skip_bad)
    if resume and previous_info.get("manifest_hash") not in (None, source.manifest_hash):
        if not allow_config_change:
            raise UsageError(
                f"--resume {out}: the dataset at {cfg.data.root} is not the one this run trained on "
                f"(manifest hash {source.manifest_hash} vs {previous_info['manifest_hash']}); "
                "pass --allow-config-change to continue on it anyway (recorded in run.json)"
            )
        changes.append(("data.manifest_hash", previous_info["manifest_hash"], source.manifest_hash))
    tdim = transform_dim(cfg.data.transform, source.latent_size)
    per_device = per_device_batch_size(cfg.train.batch_size, ctx.world_size)
    loader = make_train_loader(
        source,
        batch_size_per_rank=per_device,
        views_per_sample=cfg.data.views_per_sample,
        transform=cfg.data.transform,
        canonical=cfg.data.canonical_quaternion,
        resolution=cfg.data.resolution,
        seed=cfg.train.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        num_workers=cfg.data.num_workers,
        drop_last=cfg.train.drop_last,
    )
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise UsageError(
            f"{cfg.data.root}: {source.num_objects} training objects make no full batch of "
            f"{per_device} per process (train.batch_size={cfg.train.batch_size}, {ctx.world_size} process(es)); "
            "lower --batch-size"
        )

    # Model: method + online probes, restored before wrapping so DDP broadcasts the restored weights.
    method = build_method(cfg, tdim).to(device)
    online: nn.Module | None = None
    if cfg.train.online_eval:
        repr_dim = int(method.backbone.num_features)
        online = OnlineEvaluator(
            method.representation_parts,
            repr_dim,
            len(source.class_names),
            rotation_target_dim(cfg.data.transform),
        ).to(device)
    if state is not None:
        _strict_load(method, state["model"], str(checkpoint_path))
        if online is not None:
            if "online_eval" not in state:
                raise UsageError(
                    f"{checkpoint_path} has no online probes; resume with train.online_eval=false"
                )
            _strict_load(online, state["online_eval"], f"{checkpoint_path} (online probes)")
    if cfg.train.channels_last:
        method.backbone.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        method.backbone.compile()  # in place: parameter names keep no '_orig_mod.' prefix
    model = wrap(method, ctx, sync_bn=cfg.train.sync_bn)
    online_model = wrap(online, ctx, sync_bn=False) if online is not None else None
    optimizer = build_optimizer([m for m in (method, online) if m is not None], cfg.optim)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_grad_scaler)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])

    info = _initial_info(cfg, ctx, source, tdim, per_device, steps_per_epoch, previous_info)
    run = _Run(
        cfg=cfg,
        out=out,
        ctx=ctx,
        precision=precision,
        loader=loader,
        steps_per_epoch=steps_per_epoch,
        per_device_batch=per_device,
        method=method,
        model=model,
        online=online_model,
        optimizer=optimizer,
        scaler=scaler,
        info=info,
    )
    if state is not None:
        run.step, run.epoch, run.batches_in_epoch = state["step"], state["epoch"], state["batches_in_epoch"]
        restore_rng_state(state["rng"], ctx.device)  # the generators as they were when it was saved
        run.wall_time_s = float(state.get("wall_time_s", 0.0))
        run.last_checkpoint_step = run.step
        info["resumes"] = info.get("resumes", 0) + 1
        if changes:
            info.setdefault("config_changes", []).append(
                {"at_step": run.step, "changes": [[k, old, new] for k, old, new in changes]}
            )
            log.warning("resuming with config changes: %s", format_config_changes(changes))
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out)
        if state is not None:
            truncate_metrics(out / "metrics.jsonl", run.step)
    run.metrics = MetricsLog(out, enabled=ctx.is_main, tensorboard=cfg.train.tensorboard)
    _write_run_info(run, status="running")
    log.info(
        "training %s on %s (%d objects, transform %s -> %d params): global batch %d = %d process(es) x %d, "
        "%d steps/epoch, %d epochs, %s, %s%s",
        cfg.model.method,
        cfg.data.root,
        source.num_objects,
        cfg.data.transform,
        tdim,
        cfg.train.batch_size,
        ctx.world_size,
        per_device,
        steps_per_epoch,
        cfg.train.epochs,
        device,
        precision.name,
        f", resuming at step {run.step} (epoch {run.epoch})" if state is not None else "",
    )
    return run


def _initial_info(
    cfg: Config,
    ctx: DistContext,
    source: Any,
    tdim: int,
    per_device: int,
    steps_per_epoch: int,
    previous: dict[str, Any],
) -> dict[str, Any]:
    info = dict(previous)
    info.update(
        {
            "data_root": str(cfg.data.root),
            "manifest_hash": str(source.manifest_hash),
            "num_objects": int(source.num_objects),
            "num_classes": len(source.class_names),
            "transform": cfg.data.transform,
            "transform_dim": int(tdim),
            "world_size": ctx.world_size,
            "per_device_batch_size": per_device,
            "steps_per_epoch": steps_per_epoch,
            "device": str(ctx.device),
            "precision": cfg.train.precision,
            "sie_version": __version__,
            "torch_version": torch.__version__,
        }
    )
    return info


def _write_run_info(run: _Run, *, status: str) -> None:
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
    with atomic_write(run.out / RUN_INFO_FILENAME) as handle:
        handle.write((json.dumps(run.info, indent=2) + "\n").encode())


# ---- steps and periodic work ---------------------------------------------------------------------


def _epoch_batches(loader: Any, seed: int, epoch: int, skip: int) -> Iterator[Any]:
    """The epoch's batches after the first ``skip`` (already trained on before an interruption).

    Creating a DataLoader iterator draws worker seeds from the global torch RNG; doing it under a
    forked RNG seeded by (seed, epoch) keeps the global stream independent of when iterators are
    created (so a resumed run and an uninterrupted one see the same stream) while giving each epoch
    its own worker seeds. The loader's own draws depend only on (seed, epoch, object index).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "loader", epoch))
        iterator: Iterator[Any] = iter(loader)
    for _ in range(skip):
        next(iterator)
    return iterator


def _loop(run: _Run, stop: StopRequest, max_steps: int | None) -> None:
    cfg, ctx = run.cfg, run.ctx
    if run.step >= run.total_steps or (max_steps is not None and run.step >= max_steps):
        log.info("nothing to do: the run is at step %d of %d", run.step, run.total_steps)
        _finish(run, "completed" if run.step >= run.total_steps else f"stopped at max_steps={max_steps}")
        return
    progress = tqdm(
        total=run.total_steps,
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
                    _log_record(run, meter, progress)
                    last_log = time.monotonic()
                if run.batches_in_epoch >= run.steps_per_epoch:
                    epoch_finished = True  # the epoch-end checkpoint below also serves a stop
                    break
                if save_now or stop_reason is not None:
                    _save(run)
                    last_checkpoint = time.monotonic()
                if stop_reason is not None:
                    break
            if epoch_finished:
                run.epoch += 1
                run.batches_in_epoch = 0
                if meter.steps:
                    _log_record(run, meter, progress)
                    last_log = time.monotonic()
                _save(run)
                last_checkpoint = time.monotonic()
    finally:
        progress.close()
    if meter.steps:
        _log_record(run, meter, progress)
    if stop_reason is None:
        _finish(run, "completed")
        log.info("finished %d epochs (%d steps); run directory %s", cfg.train.epochs, run.step, run.out)
    else:
        _finish(run, f"stopped ({stop_reason})")
        log.warning(
            "stopped (%s) at step %d, epoch %d; checkpoint saved to %s. Resume with: sie train --out %s --resume",
            stop_reason,
            run.step,
            run.epoch,
            run.out / CHECKPOINT_FILENAME,
            run.out,
        )


def _step(
    run: _Run, batch: Any, stop: StopRequest, checkpoint_due: bool
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
    # One collective per step: every rank learns whether any rank saw a non-finite loss, a stop
    # signal or (rank 0's clock) a due checkpoint, before anyone starts the backward pass.
    flags = torch.tensor(
        [float(not torch.isfinite(total).item()), float(stop.requested), float(checkpoint_due)],
        device=ctx.device,
    )
    nonfinite, stop_now, save_now = (bool(v) for v in all_reduce_max(flags, ctx).tolist())
    values: dict[str, Tensor] = {"loss": output.loss.detach(), **output.terms, **probe_metrics}
    if nonfinite:
        _raise_nonfinite(run, values)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(total).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    hook = getattr(run.method, "on_step_end", None)
    if callable(hook):
        hook(run.step)
    run.step += 1
    run.batches_in_epoch += 1
    values["lr"] = torch.tensor(lr)
    return values, stop_now, save_now


def _raise_nonfinite(run: _Run, values: dict[str, Tensor]) -> None:
    bad = nonfinite_terms({k: float(v) for k, v in values.items()})
    where = ", ".join(bad) if bad else "on another rank"
    kept = (
        f"the last good checkpoint (step {run.last_checkpoint_step}) is kept in {run.out / CHECKPOINT_FILENAME}"
        if run.last_checkpoint_step is not None
        else "no checkpoint had been written yet"
    )
    raise NonFiniteLoss(
        f"non-finite loss at step {run.step} (epoch {run.epoch}): {where}; stopped before the optimiser "
        f"step; {kept}. Try a lower optim.lr, train.precision=fp32 or a larger train.batch_size"
    )


def _log_record(run: _Run, meter: WindowMeter, progress: tqdm) -> None:
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
        log.info(
            "step %d/%d epoch %d loss %.5g, %.1f pairs/s, data wait %.0f%%",
            run.step,
            run.total_steps,
            run.epoch,
            record.get("loss", float("nan")),
            record["pairs_per_s"],
            100 * record["data_wait_frac"],
        )


def _save(run: _Run) -> None:
    """Write checkpoint.pt and backbone.safetensors (rank 0; atomic) and update run.json."""
    if run.ctx.is_main:
        state = {
            "format": "sie-checkpoint-1",
            "model": run.method.state_dict(),
            "online_eval": _unwrap(run.online).state_dict() if run.online is not None else None,
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(),
            "step": run.step,
            "epoch": run.epoch,
            "batches_in_epoch": run.batches_in_epoch,
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
        _write_run_info(run, status="running")
    if run.ctx.distributed:
        dist.barrier()  # no rank runs ahead while rank 0 writes; if rank 0 fails, its exit ends the barrier
    run.last_checkpoint_step = run.step


def _finish(run: _Run, status: str) -> None:
    _write_run_info(run, status=status)
    if run.ctx.distributed:
        dist.barrier()


def _unwrap(module: nn.Module) -> nn.Module:
    inner = getattr(module, "module", module)
    assert isinstance(inner, nn.Module)
    return inner
