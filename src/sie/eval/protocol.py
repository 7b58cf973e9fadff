"""The protocol's parts on extracted features: classification, regression probes and retrieval -> records.

Each function trains/evaluates one part and returns :class:`Record` s (one per metric, representation
part, split and probe seed) together with the chance level of the metric on the same data:

* classification top-1/top-5: the majority-class classifier (the k most frequent training classes);
* regression R²: the constant predictor equal to the training-target mean (rotation ≈ 0.229 on
  3DIEBench because of the pooled mean, facebookresearch/SIE; docs/evaluation.md; colour ≈ 0);
* MRR / H@k: a uniformly random ranking of the V views (``H_V / V``, ``k / V``); H@k is reported only
  for k < V (with k >= V every true view ranks within k, so every method scores 1);
* PRE: the do-nothing predictor, which returns the start view's embedding and so retrieves the start
  view (it is in the gallery): computed exactly from the query split's latents
  (``metrics.do_nothing_pre``, ≈ (V - 1) / V x 0.627 on 3DIEBench). The level of a retrieval
  independent of the query (≈ 0.627) stays in the record's ``reference_levels``;
* RankMe (effective rank of the val features, no training): no chance level; its upper bound
  ``min(N, D)`` is written in the record's note.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from sie.config import EvalConfig
from sie.data.targets import relative_transforms, transform_dim
from sie.errors import UsageError
from sie.eval import metrics, probes, retrieval
from sie.eval.features import SplitFeatures
from sie.eval.tasks import RegressionTask
from sie.seeding import derive_seed

if TYPE_CHECKING:
    from sie.data.source import ViewSource
    from sie.methods.base import Method

__all__ = [
    "DO_NOTHING_PRE_NOTE",
    "INDEPENDENT_PRE_NOTE",
    "EvalInputs",
    "Record",
    "aggregate_sequences",
    "aggregate_table",
    "predictor_transform",
    "run_aggregate_classification",
    "run_classification",
    "run_rank",
    "run_regression",
    "run_retrieval",
    "training_target_mean",
]

DO_NOTHING_PRE_NOTE = "do-nothing predictor (retrieves the start view)"
INDEPENDENT_PRE_NOTE = "retrieved rotation independent of the query's"

_EVAL_PAIR_SEED = 0  # evaluation pairs are the same for every probe seed, so seeds vary training only


@dataclass
class Record:
    """One number of the protocol (a row of results.json)."""

    metric: str  # top1, top5, r2, MRR, H@k, PRE
    task: str  # classification, rotation, colour, translation, absolute_rotation, retrieval
    part: str  # inv, equi, full (representation parts) or embedding (retrieval)
    split: str  # val, an OOD split name, or a retrieval mode such as val-all
    seed: int | None  # probe seed; None for retrieval (no training)
    value: float
    chance: float | None
    chance_note: str
    higher_is_better: bool
    wall_time_s: float
    probe: dict[str, Any] | None = None
    reference_levels: dict[str, float] | None = None
    """Further trivial levels of the metric besides ``chance``, by description (PRE only, for now)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalInputs:
    """Everything the protocol parts share for one checkpoint."""

    method: Method
    features: dict[str, SplitFeatures]  # train, val and the optional OOD split
    sources: dict[str, ViewSource]
    parts: dict[str, slice]
    cfg: EvalConfig
    device: torch.device
    resolution: int
    transform_kind: str
    canonical: bool
    num_classes: int
    figure_arrays: dict[str, Any] = field(default_factory=dict)

    @property
    def schedule(self) -> probes.ProbeSchedule:
        return probes.ProbeSchedule.from_config(self.cfg)

    def probe_features(self, part: slice) -> tuple[probes.ViewFeatures, Callable[[str], probes.ViewFeatures]]:
        """Training features of ``part`` and a function giving a split's features after training.

        Cached eval-mode features by default; with ``reference_bn`` a fresh train-mode backbone copy
        (``sie.eval.reference_bn``) whose drifted statistics also produce the evaluation features.
        """
        if not self.cfg.reference_bn:
            train = probes.CachedViewFeatures(self.features["train"].representations, part)
            return train, lambda split: probes.CachedViewFeatures(self.features[split].representations, part)
        from sie.eval.reference_bn import TrainModeBackboneFeatures

        supplier = TrainModeBackboneFeatures(
            self.method.backbone, self.sources["train"], part, resolution=self.resolution, device=self.device
        )
        return supplier, lambda split: supplier.evaluation_features(
            self.sources[split], batch_size=self.cfg.feature_batch_size
        )

    def probe_settings(self, head: str) -> dict[str, Any]:
        s = self.schedule
        return {
            "head": head,
            "epochs": s.epochs,
            "batch_size": s.batch_size,
            "lr": s.lr,
            "weight_decay": s.weight_decay,
            "hidden": list(s.hidden) if head == "mlp" else [],
            "optimizer": "adam",
            "reference_bn": self.cfg.reference_bn,
        }


def _all_views(n: int, v: int) -> tuple[Tensor, Tensor]:
    return torch.arange(n).repeat_interleave(v), torch.arange(v).repeat(n)


# ---- classification ---------------------------------------------------------------------------------


def run_classification(inputs: EvalInputs, part_name: str, seed: int) -> list[Record]:
    """Linear probe on single views of ``part_name``; top-1 and top-5 on every view of the val split."""
    start = time.perf_counter()
    train_f, val_f = inputs.features["train"], inputs.features["val"]
    train, evaluated = inputs.probe_features(inputs.parts[part_name])
    head = probes.fit_classifier(
        train, train_f.labels, inputs.num_classes, inputs.schedule, seed=seed, device=inputs.device
    )
    objects, views = _all_views(val_f.num_objects, val_f.views_per_object)
    logits = probes.predict_views(head, evaluated("val"), objects, views)
    return _top_k_records(
        logits, val_f.labels[objects], train_f.labels, val_f.labels, part_name, seed, start,
        inputs.probe_settings("linear"),
    )  # fmt: skip


def _top_k_records(
    logits: Tensor,
    labels: Tensor,
    train_labels: Tensor,
    val_labels: Tensor,
    part_name: str,
    seed: int,
    started: float,
    settings: dict[str, Any],
) -> list[Record]:
    """Top-1 and top-5 records of val ``logits`` against ``labels``, with the majority-class chance levels."""
    seconds = time.perf_counter() - started
    return [
        Record(
            f"top{k}",
            "classification",
            part_name,
            "val",
            seed,
            metrics.top_k_accuracy(logits, labels, k),
            metrics.majority_class_accuracy(train_labels, val_labels, k),
            f"majority class{'es' if k > 1 else ''} of the training split",
            True,
            seconds,
            settings,
        )
        for k in (1, 5)
    ]


# ---- classification of a sequence representation ------------------------------------------------------

_AGGREGATE_SEED = 1  # the evaluation's fixed view sequences (the same for every probe seed)
_AGGREGATE_CHUNK = 4096


def aggregate_sequences(num_objects: int, views: int, length: int, seed: int = _AGGREGATE_SEED) -> Tensor:
    """(N, V, M) view indices: for each object, V sequences of M distinct views, sequence s starting at
    view s followed by M - 1 other views in a random order; deterministic in ``seed``."""
    if not 1 <= length <= views:
        raise UsageError(f"a sequence of {length} views cannot be drawn from {views} views per object")
    gen = torch.Generator().manual_seed(derive_seed(seed, "aggregate-sequences"))
    out = torch.empty(num_objects, views, length, dtype=torch.long)
    first = torch.arange(views)
    for start in range(0, num_objects, 1024):
        n = min(1024, num_objects - start)
        keys = torch.rand(n, views, views, generator=gen)
        keys[:, first, first] = -1.0  # view s sorts first in sequence s
        out[start : start + n] = keys.argsort(dim=-1)[..., :length]
    return out


@torch.no_grad()
def aggregate_table(inputs: EvalInputs, split: str, sequences: Tensor) -> Tensor:
    """(N, S, E) sequence representations ``method.aggregate`` of the (N, S, M) view ``sequences`` of a split."""
    from sie.data.targets import relative_transforms

    feats = inputs.features[split]
    n, s, m = sequences.shape
    objects = torch.arange(n)[:, None, None].expand(n, s, m)
    reps = feats.representations  # (N, V, D) on the probe device
    rows = []
    flat_objects, flat_views = objects.reshape(-1, m), sequences.reshape(-1, m)
    for i in range(0, flat_objects.shape[0], _AGGREGATE_CHUNK):
        obj, view = flat_objects[i : i + _AGGREGATE_CHUNK], flat_views[i : i + _AGGREGATE_CHUNK]
        z = reps[obj.to(reps.device), view.to(reps.device)].to(inputs.device)
        params = relative_transforms(feats.latents[obj, view], inputs.transform_kind, inputs.canonical)
        rows.append(inputs.method.aggregate(z, params.to(inputs.device)).float())
    return torch.cat(rows).reshape(n, s, -1)


def run_aggregate_classification(inputs: EvalInputs, seed: int, tables: dict[str, Tensor]) -> list[Record]:
    """Linear probe on a method's sequence representation (part ``aggregate``): ``tables`` from
    :func:`aggregate_table` for ``train`` and ``val``; top-1 and top-5 on every val sequence."""
    start = time.perf_counter()
    train_f, val_f = inputs.features["train"], inputs.features["val"]
    train = probes.CachedViewFeatures(tables["train"])
    head = probes.fit_classifier(
        train, train_f.labels, inputs.num_classes, inputs.schedule, seed=seed, device=inputs.device
    )
    val = probes.CachedViewFeatures(tables["val"])
    objects, sequences = _all_views(val.num_objects, val.views_per_object)
    logits = probes.predict_views(head, val, objects, sequences)
    length = int(getattr(inputs.method, "aggregate_views", 0))
    settings = {**inputs.probe_settings("linear"), "sequence_views": length}
    return _top_k_records(
        logits, val_f.labels[objects], train_f.labels, val_f.labels, "aggregate", seed, start, settings
    )


# ---- effective rank ------------------------------------------------------------------------------------


def run_rank(inputs: EvalInputs, part_name: str | None) -> list[Record]:
    """RankMe of every val view's features: of representation part ``part_name``, or of the
    predictor-space embeddings when ``part_name`` is None (part ``embedding``); no probe, no seed."""
    start = time.perf_counter()
    val_f = inputs.features["val"]
    if part_name is None:
        if val_f.embeddings is None:
            return []
        table = val_f.embeddings
    else:
        table = val_f.representations[..., inputs.parts[part_name]]
    flat = table.reshape(-1, table.shape[-1]).float().cpu()
    value = metrics.effective_rank(flat)
    bound = min(flat.shape)
    return [
        Record(
            "rankme",
            "rank",
            part_name or "embedding",
            "val",
            None,
            value,
            None,
            f"effective rank of {flat.shape[0]} x {flat.shape[1]} features; at most {bound}",
            True,
            time.perf_counter() - start,
        )
    ]


# ---- regression probes ------------------------------------------------------------------------------


def _targets(task: RegressionTask, feats: SplitFeatures) -> tuple[tuple[Tensor, ...], Tensor]:
    """Fixed evaluation samples of a split ((objects, view_a[, view_b])) and their targets."""
    lat = feats.latents
    if task.kind == "pair":
        objects, a, b = probes.evaluation_pairs(feats.num_objects, feats.views_per_object, _EVAL_PAIR_SEED)
        return (objects, a, b), task.target(torch.stack((lat[objects, a], lat[objects, b]), dim=1))
    objects, views = _all_views(feats.num_objects, feats.views_per_object)
    return (objects, views), task.target(lat[objects, views])


def training_target_mean(inputs: EvalInputs, task: RegressionTask) -> Tensor:
    """Mean (K,) of the task's targets on the training split: the constant predictor of the R² chance level."""
    _, fit_targets = _targets(task, inputs.features["train"])
    return fit_targets.double().mean(dim=0)


def run_regression(
    inputs: EvalInputs, task: RegressionTask, part_name: str, seed: int, *, extra_splits: tuple[str, ...] = ()
) -> tuple[list[Record], dict[str, tuple[Tensor, Tensor]]]:
    """Train the task's MLP probe on ``part_name``; pooled R² on val and on ``extra_splits`` (OOD).

    Returns the records and, per evaluated split, ``(predictions, targets)`` (for the orbit-error figure).
    """
    start = time.perf_counter()
    train_f = inputs.features["train"]
    train, evaluated = inputs.probe_features(inputs.parts[part_name])
    fit = probes.fit_pair_regressor if task.kind == "pair" else probes.fit_view_regressor
    head = fit(
        train,
        train_f.latents,
        task.target,
        task.out_dim,
        inputs.schedule,
        seed=seed,
        device=inputs.device,
        task=task.name,
    )
    train_seconds = time.perf_counter() - start
    _, fit_targets = _targets(task, train_f)
    records, outputs = [], {}
    for split in ("val", *extra_splits):
        t0 = time.perf_counter()
        samples, targets = _targets(task, inputs.features[split])
        feats = evaluated(split)
        if task.kind == "pair":
            pred = probes.predict_pairs(head, feats, *samples)
        else:
            pred = probes.predict_views(head, feats, *samples)
        outputs[split] = (pred, targets)
        records.append(
            Record(
                "r2",
                task.name,
                part_name,
                split,
                seed,
                metrics.pooled_r2(pred, targets),
                metrics.constant_predictor_r2(fit_targets, targets),
                "constant predictor = mean training target (pooled-mean R²)",
                True,
                train_seconds + time.perf_counter() - t0,
                inputs.probe_settings("mlp"),
            )
        )
    return records, outputs


# ---- retrieval --------------------------------------------------------------------------------------


def predictor_transform(
    method: Method, kind: str, canonical: bool, latent_size: int
) -> Callable[[Tensor], Tensor]:
    """Latents (n, 2, L) -> the predictor's conditioning (n, 1, P) in the run's kind.

    Refuses (UsageError) a dataset whose latents give another P than the predictor was built for,
    e.g. a -T dataset (translations appended) for a model trained without translations.
    """
    expected = getattr(method, "transform_dim", None)
    given = transform_dim(kind, latent_size)
    if expected is not None and given != expected:
        raise UsageError(
            f"the run's predictor takes {expected} transformation parameters ({kind!r}), but this dataset's "
            f"{latent_size}-value latents give {given}; evaluate it on a dataset like the one it was trained on"
        )
    return lambda pairs: relative_transforms(pairs, kind, canonical)


def _independent_pre(
    query_latents: Tensor, gallery_latents: Tensor, seed: int, samples: int = 200_000
) -> float:
    """PRE of a retrieval independent of the query: random (query view, gallery view) pairs of the data."""
    from sie.geometry import euler_xyz_to_quaternion

    gen = torch.Generator().manual_seed(derive_seed(seed, "independent-pre"))
    q = query_latents.reshape(-1, query_latents.shape[-1])[:, 0:3]
    g = gallery_latents.reshape(-1, gallery_latents.shape[-1])[:, 0:3]
    qi = torch.randint(0, q.shape[0], (samples,), generator=gen)
    gi = torch.randint(0, g.shape[0], (samples,), generator=gen)
    errors = metrics.rotation_retrieval_errors(euler_xyz_to_quaternion(q[qi]), euler_xyz_to_quaternion(g[gi]))
    return float(errors.mean())


def run_retrieval(
    inputs: EvalInputs,
) -> tuple[list[Record], dict[str, retrieval.RetrievalScores], dict[str, Tensor]]:
    """MRR/H@k for (train, train), (val, val) and PRE for those and (val, all), through the predictor.

    Returns the records, the per-query scores by mode and the normalised queries by split (for figures).
    """
    method = inputs.method
    latent_size = int(inputs.features["train"].latents.shape[-1])
    transform = predictor_transform(method, inputs.transform_kind, inputs.canonical, latent_size)
    queries: dict[str, Tensor] = {}
    records: list[Record] = []
    scores: dict[str, retrieval.RetrievalScores] = {}
    for split in ("train", "val"):
        f = inputs.features[split]
        assert f.embeddings is not None
        queries[split] = retrieval.predictor_queries(
            method.predict, f.embeddings, f.latents, transform, device=inputs.device
        )
    for split in ("train", "val"):
        t0 = time.perf_counter()
        f = inputs.features[split]
        assert f.embeddings is not None
        mode = f"{split}-{split}"
        ranks = retrieval.own_gallery_ranks(queries[split], f.embeddings, device=inputs.device)
        scores[f"ranks:{mode}"] = ranks
        seconds = time.perf_counter() - t0
        v = f.views_per_object
        for metric, value in ranks.summary().items():
            k = int(metric[2:]) if metric.startswith("H@") else None
            if k is not None and k >= v:
                continue  # every true view ranks within k of the V: 1 for every method, says nothing
            chance = metrics.uniform_ranking_mrr(v) if k is None else metrics.uniform_ranking_hits_at_k(v, k)
            records.append(
                Record(metric, "retrieval", "embedding", mode, None, value, chance,
                       f"uniformly random ranking of the object's {v} views", True, seconds)
            )  # fmt: skip
    train_f, val_f = inputs.features["train"], inputs.features["val"]
    assert train_f.embeddings is not None and val_f.embeddings is not None
    modes = {
        "train-train": ("train", [(train_f.embeddings, train_f.latents)]),
        "val-val": ("val", [(val_f.embeddings, val_f.latents)]),
        "val-all": ("val", [(val_f.embeddings, val_f.latents), (train_f.embeddings, train_f.latents)]),
    }
    for mode, (split, galleries) in modes.items():
        t0 = time.perf_counter()
        q_lat = inputs.features[split].latents
        result = retrieval.rotation_retrieval(queries[split], q_lat, galleries, device=inputs.device)
        scores[f"pre:{mode}"] = result
        independent = _independent_pre(
            q_lat, torch.cat([lat.reshape(-1, lat.shape[-1]) for _, lat in galleries]), 0
        )
        records.append(
            Record("PRE", "retrieval", "embedding", mode, None, result.summary()["PRE"],
                   metrics.do_nothing_pre(q_lat), DO_NOTHING_PRE_NOTE, False, time.perf_counter() - t0,
                   reference_levels={INDEPENDENT_PRE_NOTE: independent})
        )  # fmt: skip
    return records, scores, queries
