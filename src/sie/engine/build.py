"""The build phase of a training run: data, method, probes, DDP, optimiser, and resume from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sie import __version__
from sie.checkpoint import (
    BACKBONE_FILENAME,
    CHECKPOINT_FILENAME,
    RUN_INFO_FILENAME,
    load_checkpoint,
    load_state_strict,
    read_run_info,
    remove_stale_temporaries,
)
from sie.config import CONFIG_FILENAME, Config, config_from_dict, save_config
from sie.data.raw import IDENTITY_VERSION as DATASET_IDENTITY_VERSION
from sie.device import resolve_precision
from sie.engine.faults import nonfinite_entries
from sie.engine.launch import DistContext, per_device_batch_size, wrap
from sie.engine.metrics import METRICS_FILENAME, MetricsLog, reset_metrics, truncate_metrics
from sie.engine.online import OnlineEvaluator, rotation_target_dim
from sie.engine.optim import build_optimizer
from sie.engine.run import TrainingRun, write_run_info
from sie.engine.state import format_config_changes, restore_rng_state, resume_config_changes
from sie.errors import UsageError, WorkFailed
from sie.log import get_logger
from sie.seeding import seed_everything

__all__ = ["build_run"]

log = get_logger(__name__)


def build_run(
    cfg: Config, out: Path, ctx: DistContext, *, resume: bool, allow_config_change: bool
) -> TrainingRun:
    from sie.data import make_train_loader, open_split, transform_dim
    from sie.methods import METHODS, ParamGroup, build_method, views_per_sample

    views_per_sample(cfg)  # an unknown method or impossible view count is named before any data is read
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
        if saved_cfg.train.batch_size != cfg.train.batch_size:
            # The step, the position in the epoch and the lr schedule all count batches of the old size.
            raise UsageError(
                f"--resume {out}: train.batch_size cannot change on resume ({saved_cfg.train.batch_size} -> "
                f"{cfg.train.batch_size}): the checkpoint's step {state['step']}, its position in epoch "
                f"{state['epoch']} and the learning-rate schedule count batches of {saved_cfg.train.batch_size}; "
                f"resume with --batch-size {saved_cfg.train.batch_size}, or start a new run (another --out)"
            )
        saved_backbone = (saved_cfg.model.arch, saved_cfg.model.width, saved_cfg.model.small_stem)
        wanted_backbone = (cfg.model.arch, cfg.model.width, cfg.model.small_stem)
        if saved_backbone != wanted_backbone:
            # No config-change permission makes weights of one architecture load into another.
            raise UsageError(
                f"--resume: {checkpoint_path} holds a model.arch={saved_cfg.model.arch!r} (width "
                f"{saved_cfg.model.width}, small_stem {saved_cfg.model.small_stem}) backbone; this configuration "
                f"asks for model.arch={cfg.model.arch!r} (width {cfg.model.width}, small_stem "
                f"{cfg.model.small_stem}); start a new run (another --out) for another backbone"
            )
        poisoned = nonfinite_entries(
            {k: state[k] for k in ("model", "online_eval", "scaler") if k in state}
            | {"optimizer": state.get("optimizer", {}).get("state", {})}
        )
        if poisoned:  # written before every save was checked: resuming would only repeat the NaN
            raise UsageError(
                f"--resume: {checkpoint_path} holds non-finite values ({', '.join(poisoned[:4])}"
                f"{', ...' if len(poisoned) > 4 else ''}); it cannot be resumed, start a new run"
            )
        info_path = out / RUN_INFO_FILENAME
        previous_info = read_run_info(info_path) if info_path.is_file() else {}
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
            if "dataset_identity_version" not in previous_info:
                # run.json of an older sie, whose identity covered the split files only: not comparable.
                raise UsageError(
                    f"--resume {out}: its run.json holds a dataset identity of an older sie (split files "
                    f"only), which cannot be compared with the dataset at {cfg.data.root} "
                    f"({source.manifest_hash}); if it is the dataset this run trained on, pass "
                    "--allow-config-change (recorded in run.json)"
                )
            raise UsageError(
                f"--resume {out}: the dataset at {cfg.data.root} is not the one this run trained on "
                f"(manifest hash {source.manifest_hash} vs {previous_info['manifest_hash']}); "
                "pass --allow-config-change to continue on it anyway (recorded in run.json)"
            )
        changes.append(("data.manifest_hash", previous_info["manifest_hash"], source.manifest_hash))
    tdim = transform_dim(cfg.data.transform, source.latent_size)
    per_device = per_device_batch_size(cfg.train.batch_size, ctx.world_size)
    sample_views = views_per_sample(cfg)
    if sample_views > source.views_per_object:
        origin = METHODS[cfg.model.method].views_origin
        raise UsageError(
            f"{cfg.data.root}: {source.views_per_object} views per object, but model.method="
            f"{cfg.model.method!r} trains on {sample_views} views of one object per sample ({origin})"
        )
    loader = make_train_loader(
        source,
        batch_size_per_rank=per_device,
        views_per_sample=sample_views,
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
    saved_steps_per_epoch = None
    if state is not None:
        saved_steps_per_epoch = state.get("steps_per_epoch", previous_info.get("steps_per_epoch"))
    if saved_steps_per_epoch is not None and saved_steps_per_epoch != steps_per_epoch:
        raise UsageError(
            f"--resume {out}: the run has {saved_steps_per_epoch} steps per epoch, this configuration gives "
            f"{steps_per_epoch} ({source.num_objects} objects, global batch {cfg.train.batch_size}, "
            f"train.drop_last={cfg.train.drop_last}, {ctx.world_size} process(es)); its step, position in the "
            "epoch and learning-rate schedule would no longer match: resume with the run's own settings, or "
            "start a new run (another --out)"
        )

    # Model: method + online probes, restored before wrapping so DDP broadcasts the restored weights.
    method = build_method(cfg, tdim).to(device)
    online: nn.Module | None = None
    if cfg.train.online_eval:
        repr_dim = int(method.backbone.num_features)  # type: ignore[arg-type]
        online = OnlineEvaluator(
            method.representation_parts,
            repr_dim,
            len(source.class_names),
            rotation_target_dim(cfg.data.transform),
        ).to(device)
    if state is not None:
        load_state_strict(method, state["model"], str(checkpoint_path))
        if online is not None:
            if "online_eval" not in state:
                raise UsageError(
                    f"{checkpoint_path} has no online probes; resume with train.online_eval=false"
                )
            load_state_strict(online, state["online_eval"], f"{checkpoint_path} (online probes)")
    if cfg.train.channels_last:  # the whole method: EMA targets hold backbone copies
        method.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        method.backbone.compile()  # in place: parameter names keep no '_orig_mod.' prefix
    model = wrap(method, ctx, sync_bn=cfg.train.sync_bn)
    online_model = wrap(online, ctx, sync_bn=False) if online is not None else None
    groups = method.parameter_groups()
    if online is not None:
        groups.append(ParamGroup("online_eval", [p for p in online.parameters() if p.requires_grad]))
    optimizer = build_optimizer(groups, cfg.optim)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_grad_scaler)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])

    info = initial_info(cfg, ctx, source, tdim, per_device, steps_per_epoch, previous_info)
    run = TrainingRun(
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
        saved_world = state.get("world_size")
        if saved_world is not None and saved_world != ctx.world_size:
            # Same global batch and steps per epoch, but each rank now reads other objects and holds
            # other RNG streams: the run goes on correctly, just not as the uninterrupted run would.
            log.warning(
                "resuming a run checkpointed with %d process(es) on %d: training continues from step %d, "
                "but not bit-for-bit as an uninterrupted run (the data order and random streams per "
                "process differ); recorded in run.json",
                saved_world,
                ctx.world_size,
                run.step,
            )
            info.setdefault("world_size_changes", []).append(
                {"at_step": run.step, "from": saved_world, "to": ctx.world_size}
            )
        if changes:
            info.setdefault("config_changes", []).append(
                {"at_step": run.step, "changes": [[k, old, new] for k, old, new in changes]}
            )
            log.warning("resuming with config changes: %s", format_config_changes(changes))
    try:
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            stale = remove_stale_temporaries(
                out,
                [
                    CHECKPOINT_FILENAME,
                    BACKBONE_FILENAME,
                    RUN_INFO_FILENAME,
                    METRICS_FILENAME,
                    CONFIG_FILENAME,
                ],
            )
            if stale:
                log.warning(
                    "removed %d temporary file(s) left in %s by an interrupted write: %s",
                    len(stale),
                    out,
                    ", ".join(p.name for p in stale),
                )
            save_config(cfg, out)
            if state is not None:  # records written after the checkpoint (by a run that died) are dropped
                truncate_metrics(out / METRICS_FILENAME, run.step)
            else:  # a fresh start: records of an earlier attempt that died before its first checkpoint go
                reset_metrics(out / METRICS_FILENAME)
        run.metrics = MetricsLog(out, enabled=ctx.is_main, tensorboard=cfg.train.tensorboard)
        write_run_info(run, status="running")
    except OSError as exc:  # an --out that cannot be written: bad input, nothing trained yet
        where = f"{exc.filename}: " if exc.filename else f"{out}: "
        raise UsageError(f"cannot write the run directory {out}: {where}{exc.strerror or exc}") from exc
    except WorkFailed as exc:
        raise UsageError(f"cannot write the run directory {out}: {exc}") from exc
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


def initial_info(
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
            "dataset_identity_version": DATASET_IDENTITY_VERSION,
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
