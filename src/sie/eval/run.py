"""``sie eval``: the whole protocol for one run directory, written to ``RUN/eval/results.json``.

Steps: load the run's method strictly (``sie.checkpoint.load_method``: a checkpoint of another
architecture or method is an error listing the keys), open the dataset's train and val splits
(and ``eval.ood_split``), extract or reuse the cached features of every view (``sie.eval.features``),
then run the requested parts of the protocol (``eval.tasks``) for every probe seed: linear
classification and MLP regressions on each representation part, and predictor retrieval (MRR/H@k,
PRE) for methods with a predictor. Finally store the arrays the report draws (``figures.npz``).

``results.json``::

    {"format": "sie.eval.results", "version": 1, "run": ..., "method": ..., "checkpoint_hash": ...,
     "dataset": {"root": ..., "splits": {"train": {"manifest_hash", "objects", "views"}, ...}},
     "config": {eval section}, "run_config": {the run's config}, "parts": {"inv": [0, 256], ...},
     "features": {split: {"path", "extraction_s"}}, "notes": [...], "wall_time_s": ...,
     "records": [{"metric", "task", "part", "split", "seed", "value", "chance", "chance_note",
                  "higher_is_better", "wall_time_s", "probe", "checkpoint_hash", "manifest_hash"}, ...],
     "summary": [{"metric", "task", "part", "split", "mean", "std", "n", "chance", "higher_is_better"}, ...]}
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from torch import Tensor

from sie.checkpoint import CHECKPOINT_FILENAME, atomic_write, checkpoint_hash, load_method
from sie.config import Config, EvalConfig, config_to_dict
from sie.data.source import open_split
from sie.device import resolve_device
from sie.errors import ConfigError, UsageError
from sie.eval import context, figure_data, protocol
from sie.eval.features import FeatureKey, SplitFeatures, load_or_extract_features, refuse_stale
from sie.eval.tasks import REGRESSION_TASKS, regression_tasks_for
from sie.log import get_logger

if TYPE_CHECKING:
    from sie.data.source import ViewSource
    from sie.methods.base import Method

__all__ = ["RESULTS_FORMAT", "TASKS", "evaluate", "results_path", "summarise"]

RESULTS_FORMAT = "sie.eval.results"
TASKS = ("classification", *REGRESSION_TASKS, "retrieval", "rank")
_PART_ORDER = ("inv", "equi", "full")

_log = get_logger(__name__)


def results_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "eval" / "results.json"


def _check_tasks(cfg: EvalConfig) -> None:
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown:
        raise ConfigError(
            f"eval.tasks: unknown task(s) {', '.join(map(repr, unknown))}; valid: {', '.join(TASKS)}"
        )
    if not cfg.probe_seeds:
        raise ConfigError("eval.probe_seeds: give at least one seed")


def _open(root: Path, split: str) -> ViewSource:
    source = open_split(root, split)
    if source.num_objects == 0:
        raise UsageError(
            f"{root}: split {split!r} has no objects; the protocol needs a non-empty {split} split"
        )
    return source


def _open_ood(data_root: Path, spec: str) -> tuple[str, ViewSource]:
    """``eval.ood_split``: a split NAME of the dataset root, or another dataset DIR (its val split).

    Returns the label used in results.json (the split name, or ``ood`` for another directory).
    """
    other = Path(spec)
    if other.is_dir() and other.resolve() != data_root.resolve():
        return "ood", _open(other, "val")
    if spec in ("train", "val"):
        raise ConfigError(
            f"eval.ood_split={spec!r}: name a split other than train and val, or a dataset directory"
        )
    return spec, _open(data_root, spec)


def _ordered_parts(method: Method) -> dict[str, slice]:
    parts = dict(method.evaluation_parts)
    order = [p for p in _PART_ORDER if p in parts] + [p for p in parts if p not in _PART_ORDER]
    return {p: parts[p] for p in order}


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± sample std over probe seeds for each (metric, task, part, split)."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["metric"], r["task"], r["part"], r["split"])].append(r)
    out = []
    for (metric, task, part, split), rows in groups.items():
        values = np.array([r["value"] for r in rows], dtype=np.float64)
        chances = [r["chance"] for r in rows if r["chance"] is not None]
        out.append(
            {
                "metric": metric,
                "task": task,
                "part": part,
                "split": split,
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                "n": int(values.size),
                "chance": float(np.mean(chances)) if chances else None,
                "higher_is_better": bool(rows[0]["higher_is_better"]),
            }
        )
    return out


def _add(records: list[protocol.Record], new: list[protocol.Record]) -> None:
    for r in new:
        seed = "" if r.seed is None else f", seed {r.seed}"
        chance = "n/a" if r.chance is None else f"{r.chance:.4f}"
        _log.info(
            "%s %s [%s, %s%s] = %.4f (chance %s)", r.task, r.metric, r.part, r.split, seed, r.value, chance
        )
    records.extend(new)


def _steering(
    inputs: protocol.EvalInputs, sources: dict[str, ViewSource], features: dict[str, SplitFeatures]
) -> dict[str, np.ndarray]:
    """Latent steering along rendered orbits (``eval.orbit_data``) or, without them, along val views."""
    orbit = "orbit" in features
    f, src = (features["orbit"], sources["orbit"]) if orbit else (features["val"], sources["val"])
    assert f.embeddings is not None
    transform = protocol.predictor_transform(
        inputs.method, inputs.transform_kind, inputs.canonical, int(f.latents.shape[-1])
    )
    return figure_data.steering_from_features(
        inputs.method.predict,
        transform,
        f.embeddings,
        f.latents,
        src.object_ids,
        orbit=orbit,
        device=inputs.device,
    )


def evaluate(
    run_dir: str | Path,
    data_root: str | Path,
    cfg: Config | EvalConfig | None = None,
    *,
    preset_name: str = "",
    refuse_stale_features: bool = False,
) -> Path:
    """Run the evaluation protocol on ``run_dir`` with the dataset at ``data_root``; return results.json's path.

    Args:
        run_dir: a run directory written by ``sie train`` (config.yaml, checkpoint.pt, run.json).
        data_root: a 3DIEBench-layout directory or packed store with ``train`` and ``val`` splits.
        cfg: the eval settings (a Config's ``eval`` section, or an EvalConfig); None = the run's own.
        preset_name: recorded in results.json (which eval preset produced the numbers).
        refuse_stale_features: a cached feature file that does not match, or a stale one (of the same
            dataset or of a dataset changed in place: :mod:`sie.eval.features`), is an error, for every
            split before any extraction, instead of being recomputed.
    """
    started = time.perf_counter()
    run_dir, data_root = Path(run_dir), Path(data_root)
    if not (run_dir / CHECKPOINT_FILENAME).is_file():
        raise UsageError(
            f"{run_dir}: no {CHECKPOINT_FILENAME}; is this a run directory written by `sie train`?"
        )
    module, run_cfg = load_method(run_dir)
    method = cast("Method", module)
    eval_cfg = cfg.eval if isinstance(cfg, Config) else cfg if cfg is not None else run_cfg.eval
    _check_tasks(eval_cfg)
    device = resolve_device(eval_cfg.device)
    method = method.to(device).eval()
    for p in method.parameters():
        p.requires_grad_(False)
    ckpt = checkpoint_hash(run_dir / CHECKPOINT_FILENAME)
    resolution = run_cfg.data.resolution
    notes: list[str] = []

    sources = {s: _open(data_root, s) for s in ("train", "val")}
    ood_label = ""
    if eval_cfg.ood_split:
        ood_label, ood_source = _open_ood(data_root, eval_cfg.ood_split)
        sources[ood_label] = ood_source
    if eval_cfg.reference_bn and method.evaluation_representation_name != "backbone":
        raise ConfigError(
            f"eval.reference_bn=true re-runs the backbone in train mode, but method {run_cfg.model.method!r} is "
            f"probed on its {method.evaluation_representation_name!r} outputs; evaluate it without --reference-bn"
        )
    want_retrieval = "retrieval" in eval_cfg.tasks
    context_lengths = tuple(method.context_lengths)
    if context_lengths:  # refuse a context longer than the training pairs before any work
        context.check_context_lengths(
            context_lengths, sources["train"].num_objects, sources["train"].views_per_object, str(data_root)
        )
    if want_retrieval and not method.has_predictor:
        in_context = " (in-context MRR and H@k are reported per context length)" if context_lengths else ""
        notes.append(
            f"method {run_cfg.model.method!r} has no predictor: MRR, H@k and PRE are skipped{in_context}"
        )
        want_retrieval = False
    if want_retrieval:  # refuse a dataset the predictor cannot be conditioned on before any work
        protocol.predictor_transform(
            method, run_cfg.data.transform, run_cfg.data.canonical_quaternion, sources["train"].latent_size
        )
    orbit_sources: dict[str, ViewSource] = {}
    if eval_cfg.orbit_data and want_retrieval and eval_cfg.figures:
        orbit_sources["orbit"] = _open(Path(eval_cfg.orbit_data), "orbit")
        protocol.predictor_transform(  # the orbit's latents must condition the predictor like the data's
            method,
            run_cfg.data.transform,
            run_cfg.data.canonical_quaternion,
            orbit_sources["orbit"].latent_size,
        )
    keys = {
        split: FeatureKey(
            ckpt,
            source.manifest_hash,
            split,
            resolution,
            source.num_objects,
            source.views_per_object,
            representation=method.evaluation_representation_name,
        )
        for split, source in {**sources, **orbit_sources}.items()
    }
    if refuse_stale_features:  # every split before any extraction
        for split, source in {**sources, **orbit_sources}.items():
            refuse_stale(source, keys[split], run_dir / "eval" / "features")
    features: dict[str, SplitFeatures] = {}
    for split, source in {**sources, **orbit_sources}.items():
        key = keys[split]
        features[split] = load_or_extract_features(
            method,
            source,
            key,
            run_dir / "eval" / "features",
            batch_size=eval_cfg.feature_batch_size,
            device=device,
            with_embeddings=want_retrieval and split in ("train", "val", "orbit"),
            refuse=refuse_stale_features,
        )
        # Probes index the feature table every step: keep it on the probe's device (4.3 GB for the
        # 3DIEBench train split at 512-d, fine on one GPU); embeddings stay on the host (retrieval
        # moves chunks).
        features[split].representations = features[split].representations.to(device)
    parts = _ordered_parts(method)
    dim = features["train"].representations.shape[-1]
    for name, part in parts.items():
        if len(range(dim)[part]) == 0:
            raise UsageError(f"representation part {name!r} {part} is empty for {dim}-d features")
    train_src = sources["train"]
    inputs = protocol.EvalInputs(
        method=method,
        features=features,
        sources=sources,
        parts=parts,
        cfg=eval_cfg,
        device=device,
        resolution=resolution,
        transform_kind=run_cfg.data.transform,
        canonical=run_cfg.data.canonical_quaternion,
        num_classes=max(len(train_src.class_names), int(features["train"].labels.max()) + 1),
    )

    records: list[protocol.Record] = []
    arrays: dict[str, np.ndarray] = {}
    latent_size = train_src.latent_size
    regressions = regression_tasks_for(latent_size, eval_cfg.tasks)
    aggregate_views = int(method.aggregate_views)
    aggregates: dict[str, Tensor] = {}
    if aggregate_views and "classification" in eval_cfg.tasks:
        for split in ("train", "val"):
            f = features[split]
            if aggregate_views > f.views_per_object:
                raise UsageError(
                    f"{data_root}: {f.views_per_object} views per object in {split}, fewer than the "
                    f"{aggregate_views} that method {run_cfg.model.method!r} aggregates for classification"
                )
            sequences = protocol.aggregate_sequences(f.num_objects, f.views_per_object, aggregate_views)
            aggregates[split] = protocol.aggregate_table(inputs, split, sequences)
    for i, seed in enumerate(eval_cfg.probe_seeds):
        if aggregates:
            _add(records, protocol.run_aggregate_classification(inputs, seed, aggregates))
        for part_name in parts:
            if "classification" in eval_cfg.tasks:
                _add(records, protocol.run_classification(inputs, part_name, seed))
            for task in regressions:
                extra = (ood_label,) if ood_label and task.name == "rotation" else ()
                recs, outputs = protocol.run_regression(inputs, task, part_name, seed, extra_splits=extra)
                _add(records, recs)
                if i == 0 and task.name == "rotation" and eval_cfg.figures:
                    constant = protocol.training_target_mean(inputs, task)
                    arrays.update(figure_data.orbit_error_arrays(part_name, *outputs["val"], constant))
    if "rank" in eval_cfg.tasks:
        for part_name in parts:
            _add(records, protocol.run_rank(inputs, part_name))
        _add(records, protocol.run_rank(inputs, None))
    if want_retrieval:
        recs, scores, _ = protocol.run_retrieval(inputs)
        _add(records, recs)
        if eval_cfg.figures:
            nearest = scores["pre:val-val"].nearest
            assert nearest is not None
            arrays.update(figure_data.retrieval_panel_arrays(sources["val"], nearest))
            arrays.update(
                figure_data.predictor_orbit_arrays(features["val"].latents, nearest, features["val"].latents)
            )
            arrays.update(_steering(inputs, {**sources, **orbit_sources}, features))
    elif method.has_predictor:
        notes.append("retrieval not requested (eval.tasks)")
    if context_lengths:
        tables = context.ContextTables(inputs)
        for i, seed in enumerate(eval_cfg.probe_seeds):
            context_records = context.run_context_evaluation(
                inputs, seed, tables, retrieval_scores=i == 0 and "retrieval" in eval_cfg.tasks
            )
            _add(records, context_records)
    if eval_cfg.figures:
        arrays.update(figure_data.preview_arrays(sources["val"]))
        figure_data.save_figure_data(run_dir / "eval" / "figures.npz", arrays)

    manifest = {s: src.manifest_hash for s, src in sources.items()}
    rows = []
    for r in records:
        row = r.to_dict()
        split_for_hash = r.split.split("-")[0] if r.task == "retrieval" else r.split
        row["checkpoint_hash"] = ckpt
        row["manifest_hash"] = manifest.get(split_for_hash, manifest["val"])
        rows.append(row)
    result = {
        "format": RESULTS_FORMAT,
        "version": 1,
        "run": str(run_dir.resolve()),
        "run_name": run_dir.resolve().name,
        "method": run_cfg.model.method,
        "has_predictor": bool(method.has_predictor),
        "checkpoint_hash": ckpt,
        "preset": preset_name,
        "dataset": {
            "root": str(data_root.resolve()),
            "splits": {
                s: {
                    "manifest_hash": src.manifest_hash,
                    "objects": src.num_objects,
                    "views": src.views_per_object,
                }
                for s, src in sources.items()
            },
        },
        "config": config_to_dict(eval_cfg),
        "run_config": config_to_dict(run_cfg),
        "parts": {p: [range(dim)[s].start, range(dim)[s].stop] for p, s in parts.items()},
        "features": {
            s: {"path": str(f.path) if f.path else None, "extraction_s": round(f.seconds, 3)}
            for s, f in features.items()
        },
        "device": str(device),
        "notes": notes,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "records": rows,
        "summary": summarise(rows),
    }
    path = results_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write((json.dumps(result, indent=2) + "\n").encode())
    _log.info("wrote %s (%d records, %.1f s)", path, len(rows), result["wall_time_s"])
    return path
