"""Evaluation in context: R² and MRR/H@k of a method's outputs against the length of its context.

For a method that declares ``context_lengths`` (and ``context_environments``), as ContextSSL does, every
length c (tokens, two per pair) and environment e gives its own representation of every view: the
method's output for the view (with no transformation) after a context of c / 2 training pairs in e
(:meth:`sie.methods.base.Method.evaluate_in_context`). The protocol's regression probes and retrieval
then run on these outputs, as Sharut/In-Context-Symmetries ``eval_equivariance.py`` and
``eval_MRR_Hk.py`` do:

* relative rotation and colour R²: the MLP pair probe of :mod:`sie.eval.probes` on the outputs of the
  two views of a pair (trained on the training split's outputs, scored on the val split's fixed pairs);
* MRR/H@k (val, val): for every object, its view 0 with the transformation to view v, through the same
  context, ranked against the outputs of the object's V views.

The context pairs are c / 2 distinct training objects, each with two distinct views, drawn from a fixed
seed and shared by every length, environment and probe seed (a shorter context is a prefix of a longer
one). Records carry the part ``context:<environment>:<length>`` (:func:`context_part`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from sie.data.targets import relative_transforms
from sie.errors import UsageError
from sie.eval import metrics, probes, retrieval
from sie.eval.tasks import REGRESSION_TASKS
from sie.seeding import derive_seed

if TYPE_CHECKING:
    from sie.eval.features import SplitFeatures
    from sie.eval.protocol import EvalInputs, Record

__all__ = [
    "ContextTables",
    "check_context_lengths",
    "context_pairs",
    "context_part",
    "context_tables",
    "parse_context_part",
    "run_context_evaluation",
]

_CONTEXT_SEED = 0  # the context pairs are the same for every probe seed: seeds vary the probes only
_EVAL_PAIR_SEED = 0  # as the protocol's regression probes
_QUERY_CHUNK = 4096


def context_part(environment: str, length: int) -> str:
    """The record part of outputs after a context of ``length`` tokens in ``environment``."""
    return f"context:{environment}:{length}"


def parse_context_part(part: str) -> tuple[str, int] | None:
    """``context:<environment>:<length>`` -> (environment, length); None for any other part."""
    pieces = part.split(":")
    if len(pieces) != 3 or pieces[0] != "context" or not pieces[2].isdigit():
        return None
    return pieces[1], int(pieces[2])


def check_context_lengths(lengths: tuple[int, ...], num_objects: int, views: int, where: str) -> None:
    """Refuse (UsageError, one line) a context that needs more training pairs than the data has."""
    longest = max(lengths, default=0)
    if longest // 2 > num_objects:
        raise UsageError(
            f"{where}: a context of {longest} tokens needs {longest // 2} training objects (one pair each), "
            f"but the training split has {num_objects}; lower model.context_ssl.eval_contexts or use more data"
        )
    if longest and views < 2:
        raise UsageError(f"{where}: context pairs need 2 views per object; the training split has {views}")


def context_pairs(
    num_objects: int, views: int, pairs: int, seed: int = _CONTEXT_SEED
) -> tuple[Tensor, Tensor, Tensor]:
    """(objects, view_a, view_b), each (pairs,) int64: distinct objects, two distinct views of each."""
    check_context_lengths((2 * pairs,), num_objects, views, "context")
    gen = torch.Generator().manual_seed(derive_seed(seed, "context-pairs"))
    objects = torch.randperm(num_objects, generator=gen)[:pairs]
    view_a = torch.randint(0, views, (pairs,), generator=gen)
    view_b = (view_a + 1 + torch.randint(0, max(views - 1, 1), (pairs,), generator=gen)) % views
    return objects, view_a, view_b


class ContextTables:
    """A method's in-context outputs of every view of a split, per (environment, length), computed once."""

    def __init__(self, inputs: EvalInputs) -> None:
        self.inputs = inputs
        train = inputs.features["train"]
        lengths = tuple(inputs.method.context_lengths)
        self.objects, self.view_a, self.view_b = context_pairs(
            train.num_objects, train.views_per_object, max(lengths, default=0) // 2
        )
        self._tables: dict[tuple[str, str, int], Tensor] = {}

    def context(self, environment: str, length: int) -> tuple[Tensor, Tensor, Tensor]:
        """The first ``length / 2`` context pairs: representations (c, D), (c, D) and parameters (c, P)."""
        f, c = self.inputs.features["train"], length // 2
        obj, a, b = self.objects[:c], self.view_a[:c], self.view_b[:c]
        reps = f.representations
        pair_latents = torch.stack((f.latents[obj, a], f.latents[obj, b]), dim=1)
        params = relative_transforms(pair_latents, self.inputs.transform_kind, self.inputs.canonical)[:, 0]
        device = self.inputs.device
        return (
            reps[obj.to(reps.device), a.to(reps.device)].to(device),
            reps[obj.to(reps.device), b.to(reps.device)].to(device),
            params.to(device),
        )

    def table(self, split: str, environment: str, length: int) -> Tensor:
        """(N, V, E) outputs of every view of ``split`` with no transformation, after the context."""
        key = (split, environment, length)
        if key not in self._tables:
            self._tables[key] = context_tables(
                self.inputs, self.context(environment, length), split, environment
            )
        return self._tables[key]


@torch.no_grad()
def context_tables(
    inputs: EvalInputs, context: tuple[Tensor, Tensor, Tensor], split: str, environment: str
) -> Tensor:
    """(N, V, E) outputs of every view of ``split`` (zero transformation) after ``context``, on the probe device."""
    f = inputs.features[split]
    reps = f.representations.reshape(-1, f.representations.shape[-1])
    p = relative_transforms(f.latents[:1, :2], inputs.transform_kind, inputs.canonical).shape[-1]
    rows = []
    for i in range(0, reps.shape[0], _QUERY_CHUNK):
        q = reps[i : i + _QUERY_CHUNK].to(inputs.device)
        zeros = torch.zeros(q.shape[0], p, device=inputs.device)
        rows.append(inputs.method.evaluate_in_context(context, q, zeros, environment).float())
    return torch.cat(rows).reshape(f.num_objects, f.views_per_object, -1)


@torch.no_grad()
def _queries(
    inputs: EvalInputs, context: tuple[Tensor, Tensor, Tensor], f: SplitFeatures, environment: str
) -> Tensor:
    """(N, V, E) normalised outputs of view 0 of every object with the transformation to view v, in context."""
    n, v, _ = f.representations.shape
    start = f.latents[:, :1].expand(n, v, f.latents.shape[-1])
    pairs = torch.stack((start, f.latents), dim=2).reshape(n * v, 2, -1)
    g = relative_transforms(pairs, inputs.transform_kind, inputs.canonical)[:, 0].float()
    z0 = f.representations[:, 0].repeat_interleave(v, dim=0)
    rows = []
    for i in range(0, n * v, _QUERY_CHUNK):
        out = inputs.method.evaluate_in_context(
            context,
            z0[i : i + _QUERY_CHUNK].to(inputs.device),
            g[i : i + _QUERY_CHUNK].to(inputs.device),
            environment,
        )
        rows.append(F.normalize(out.float(), dim=-1).cpu())
    return torch.cat(rows).reshape(n, v, -1)


def _pair_targets(f: SplitFeatures, task_name: str) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
    objects, a, b = probes.evaluation_pairs(f.num_objects, f.views_per_object, _EVAL_PAIR_SEED)
    task = REGRESSION_TASKS[task_name]
    return (objects, a, b), task.target(torch.stack((f.latents[objects, a], f.latents[objects, b]), dim=1))


def run_context_evaluation(
    inputs: EvalInputs, seed: int, tables: ContextTables, *, retrieval_scores: bool
) -> list[Record]:
    """Rotation and colour R² (probe ``seed``) and, with ``retrieval_scores``, MRR/H@k (val, val) at every
    context length and environment of the method; parts ``context:<environment>:<length>``."""
    from sie.eval.protocol import Record

    method, records = inputs.method, []
    train_f, val_f = inputs.features["train"], inputs.features["val"]
    for environment in method.context_environments:
        for length in method.context_lengths:
            part = context_part(environment, length)
            train_table = tables.table("train", environment, length)
            val_table = tables.table("val", environment, length)
            for task_name in ("rotation", "colour"):
                start = time.perf_counter()
                task = REGRESSION_TASKS[task_name]
                head = probes.fit_pair_regressor(
                    probes.CachedViewFeatures(train_table),
                    train_f.latents,
                    task.target,
                    task.out_dim,
                    inputs.schedule,
                    seed=seed,
                    device=inputs.device,
                    task=f"{task_name}@{part}",
                )
                samples, targets = _pair_targets(val_f, task_name)
                _, fit_targets = _pair_targets(train_f, task_name)
                pred = probes.predict_pairs(head, probes.CachedViewFeatures(val_table), *samples)
                records.append(
                    Record("r2", task_name, part, "val", seed, metrics.pooled_r2(pred, targets),
                           metrics.constant_predictor_r2(fit_targets, targets),
                           "constant predictor = mean training target (pooled-mean R²)", True,
                           time.perf_counter() - start, {**inputs.probe_settings("mlp"), "context": length})
                )  # fmt: skip
            if not retrieval_scores:
                continue
            start = time.perf_counter()
            queries = _queries(inputs, tables.context(environment, length), val_f, environment)
            ranks = retrieval.own_gallery_ranks(queries, val_table.cpu(), device=inputs.device)
            v = val_f.views_per_object
            for metric, value in ranks.summary().items():
                k = int(metric[2:]) if metric.startswith("H@") else None
                if k is not None and k >= v:
                    continue  # every true view ranks within k of the V: 1 for every method
                chance = (
                    metrics.uniform_ranking_mrr(v) if k is None else metrics.uniform_ranking_hits_at_k(v, k)
                )
                records.append(
                    Record(metric, "retrieval", part, "val-val", None, value, chance,
                           f"uniformly random ranking of the object's {v} views", True, time.perf_counter() - start)
                )  # fmt: skip
    return records
