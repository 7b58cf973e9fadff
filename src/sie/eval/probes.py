"""Probes trained on frozen per-view features: a linear classifier and MLP regressors.

The protocol of the reference scripts (facebookresearch/SIE; docs/evaluation.md), on features instead of images:

* Adam, constant learning rate (1e-3), weight decay 0, batch 256, ``epochs`` passes; one sample per
  object per epoch, objects shuffled, the last partial batch kept (the reference's loaders).
* Classification: one view per object per epoch, drawn at random; a linear head; cross-entropy.
* Pair regression (rotation, colour, translation): an ordered pair of distinct views per object per
  epoch, head input ``concat(f_a, f_b)``; an MLP ``in -> h1 -> ... -> out`` with ReLU (the reference's
  ``--deep-end``, hidden 1024-1024); MSE to the target computed from the two views' latents.
* Single-view regression (absolute rotation): one view per object, MLP, MSE.

Views and pairs are re-drawn every epoch from a generator seeded by ``(seed, task, epoch)``, so a probe
is a pure function of its seed (the reference draws them from an unseeded generator; docs/evaluation.md).
Evaluation is deterministic too: every view of every object (classification) or, for pairs, every view
paired with one other view drawn once from the seed (:func:`evaluation_pairs`), which estimates the
same quantity as the reference's single random draw per object, with less variance.

Features come from a :class:`ViewFeatures` (``gather(objects, views) -> (B, D)``): normally
:class:`CachedViewFeatures` over a table extracted once (``sie.eval.features``); the reference-BN mode
supplies features computed on the fly by a backbone in train mode instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from sie.config import EvalConfig, parse_mlp_spec
from sie.log import format_duration, get_logger
from sie.seeding import derive_seed

_log = get_logger(__name__)

__all__ = [
    "CachedViewFeatures",
    "PairTarget",
    "ProbeSchedule",
    "ViewFeatures",
    "ViewTarget",
    "build_mlp_head",
    "evaluation_pairs",
    "fit_classifier",
    "fit_pair_regressor",
    "fit_view_regressor",
    "predict_pairs",
    "predict_views",
]

PairTarget = Callable[[Tensor], Tensor]
"""Latents of ordered view pairs (B, 2, L) float64 -> targets (B, P) float32."""

ViewTarget = Callable[[Tensor], Tensor]
"""Latents of single views (B, L) float64 -> targets (B, P) float32."""

_EVAL_CHUNK = 8192  # rows per forward pass when predicting on a whole split


@dataclass(frozen=True)
class ProbeSchedule:
    """How one probe is trained (the eval section of the config)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    hidden: tuple[int, ...]

    @classmethod
    def from_config(cls, cfg: EvalConfig) -> ProbeSchedule:
        return cls(
            epochs=cfg.probe_epochs,
            batch_size=cfg.probe_batch_size,
            lr=cfg.probe_lr,
            weight_decay=cfg.probe_weight_decay,
            hidden=parse_mlp_spec(cfg.probe_hidden, "eval.probe_hidden"),
        )


class ViewFeatures(Protocol):
    """Per-view features of one split, addressed by (object index, view index)."""

    @property
    def num_objects(self) -> int: ...

    @property
    def views_per_object(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def gather(self, objects: Tensor, views: Tensor) -> Tensor:
        """Features (B, D) float32 of views ``views`` (B,) of objects ``objects`` (B,), on the probe's device."""
        ...


class CachedViewFeatures:
    """A feature table (N, V, D), optionally restricted to the dims ``part`` of D."""

    def __init__(self, table: Tensor, part: slice = slice(None)) -> None:
        if table.ndim != 3:
            raise ValueError(f"feature table must be (N, V, D); got {tuple(table.shape)}")
        self.table = table[:, :, part]

    @property
    def num_objects(self) -> int:
        return int(self.table.shape[0])

    @property
    def views_per_object(self) -> int:
        return int(self.table.shape[1])

    @property
    def dim(self) -> int:
        return int(self.table.shape[2])

    def gather(self, objects: Tensor, views: Tensor) -> Tensor:
        dev = self.table.device
        return self.table[objects.to(dev), views.to(dev)].float()


def build_mlp_head(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """``Linear(in, h1) - ReLU - ... - Linear(h_last, out)``; ``hidden=()`` gives one linear layer."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def _seeded_head(factory: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """Build a head with its initial weights fixed by ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = factory()
    return head.to(device)


def _epoch_draws(
    num_objects: int, views: int, seed: int, task: str, epoch: int
) -> tuple[Tensor, Tensor, Tensor]:
    """This epoch's object order (N,), and per object a view ``a`` (N,) and a distinct view ``b`` (N,)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, task, epoch))
    order = torch.randperm(num_objects, generator=gen)
    view_a = torch.randint(0, views, (num_objects,), generator=gen)
    if views > 1:
        view_b = (view_a + 1 + torch.randint(0, views - 1, (num_objects,), generator=gen)) % views
    else:
        view_b = view_a.clone()
    return order, view_a, view_b


def _train(
    head: nn.Module,
    schedule: ProbeSchedule,
    num_objects: int,
    make_batch: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    views: int,
    seed: int,
    task: str,
) -> None:
    """The reference's probe loop: Adam, constant lr; each epoch one sample per object, shuffled."""
    if num_objects == 0:
        raise ValueError(f"probe {task!r}: the training split has no objects")
    optimizer = torch.optim.Adam(head.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
    head.train()
    started = time.perf_counter()
    # A bar on a terminal (rank 0 runs the protocol); one log line per probe otherwise.
    epochs = tqdm(range(schedule.epochs), desc=f"probe {task}", unit="epoch", leave=False, disable=None)
    for epoch in epochs:
        order, view_a, view_b = _epoch_draws(num_objects, views, seed, task, epoch)
        for start in range(0, num_objects, schedule.batch_size):
            objects = order[start : start + schedule.batch_size]
            inputs, targets = make_batch(objects, view_a[objects], view_b[objects])
            loss = loss_fn(head(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    head.eval()
    _log.info(
        "probe %s (seed %d): %d epochs on %d objects in %s",
        task,
        seed,
        schedule.epochs,
        num_objects,
        format_duration(time.perf_counter() - started),
    )


def fit_classifier(
    features: ViewFeatures,
    labels: Tensor,
    num_classes: int,
    schedule: ProbeSchedule,
    *,
    seed: int,
    device: torch.device,
    task: str = "classification",
) -> nn.Module:
    """A linear classifier on single views; ``labels`` (N,) int64 per object. Returns the trained head."""
    head = _seeded_head(lambda: nn.Linear(features.dim, num_classes), derive_seed(seed, task, "init"), device)
    labels_dev = labels.long().to(device)

    def make_batch(objects: Tensor, view_a: Tensor, view_b: Tensor) -> tuple[Tensor, Tensor]:
        return features.gather(objects, view_a).to(device), labels_dev[objects.to(device)]

    _train(
        head,
        schedule,
        features.num_objects,
        make_batch,
        nn.functional.cross_entropy,
        views=features.views_per_object,
        seed=seed,
        task=task,
    )
    return head


def fit_pair_regressor(
    features: ViewFeatures,
    latents: Tensor,
    target: PairTarget,
    out_dim: int,
    schedule: ProbeSchedule,
    *,
    seed: int,
    device: torch.device,
    task: str,
) -> nn.Module:
    """An MLP on ``concat(f_a, f_b)`` regressing ``target(latents of (a, b))``; ``latents`` (N, V, L)."""
    head = _seeded_head(
        lambda: build_mlp_head(2 * features.dim, schedule.hidden, out_dim),
        derive_seed(seed, task, "init"),
        device,
    )

    def make_batch(objects: Tensor, view_a: Tensor, view_b: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat((features.gather(objects, view_a), features.gather(objects, view_b)), dim=1).to(device)
        pair_latents = torch.stack((latents[objects, view_a], latents[objects, view_b]), dim=1)
        return x, target(pair_latents).float().to(device)

    _train(
        head,
        schedule,
        features.num_objects,
        make_batch,
        nn.functional.mse_loss,
        views=features.views_per_object,
        seed=seed,
        task=task,
    )
    return head


def fit_view_regressor(
    features: ViewFeatures,
    latents: Tensor,
    target: ViewTarget,
    out_dim: int,
    schedule: ProbeSchedule,
    *,
    seed: int,
    device: torch.device,
    task: str,
) -> nn.Module:
    """An MLP on one view's features regressing ``target(latents of the view)``; ``latents`` (N, V, L)."""
    head = _seeded_head(
        lambda: build_mlp_head(features.dim, schedule.hidden, out_dim),
        derive_seed(seed, task, "init"),
        device,
    )

    def make_batch(objects: Tensor, view_a: Tensor, view_b: Tensor) -> tuple[Tensor, Tensor]:
        return features.gather(objects, view_a).to(device), target(latents[objects, view_a]).float().to(
            device
        )

    _train(
        head,
        schedule,
        features.num_objects,
        make_batch,
        nn.functional.mse_loss,
        views=features.views_per_object,
        seed=seed,
        task=task,
    )
    return head


def evaluation_pairs(num_objects: int, views: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Fixed evaluation pairs: every view ``a`` of every object with one other view ``b`` drawn from ``seed``.

    Returns (objects, view_a, view_b), each (N * V,) int64, object-major. With one view per object the
    pair is (v, v).
    """
    gen = torch.Generator().manual_seed(derive_seed(seed, "evaluation-pairs"))
    objects = torch.arange(num_objects).repeat_interleave(views)
    view_a = torch.arange(views).repeat(num_objects)
    if views > 1:
        view_b = (view_a + 1 + torch.randint(0, views - 1, (num_objects * views,), generator=gen)) % views
    else:
        view_b = view_a.clone()
    return objects, view_a, view_b


@torch.no_grad()
def predict_views(head: nn.Module, features: ViewFeatures, objects: Tensor, views: Tensor) -> Tensor:
    """Head outputs (n, out) on single views (objects, views: (n,)), in chunks; float32 on the CPU."""
    head.eval()
    device = next(head.parameters()).device
    outputs = [
        head(features.gather(objects[i : i + _EVAL_CHUNK], views[i : i + _EVAL_CHUNK]).to(device))
        .float()
        .cpu()
        for i in range(0, objects.numel(), _EVAL_CHUNK)
    ]
    return torch.cat(outputs) if outputs else torch.empty(0)


@torch.no_grad()
def predict_pairs(
    head: nn.Module, features: ViewFeatures, objects: Tensor, view_a: Tensor, view_b: Tensor
) -> Tensor:
    """Head outputs (n, out) on ``concat(f_a, f_b)`` for pairs given as (n,) index tensors; float32 on the CPU."""
    head.eval()
    device = next(head.parameters()).device
    outputs = []
    for i in range(0, objects.numel(), _EVAL_CHUNK):
        o = objects[i : i + _EVAL_CHUNK]
        x = torch.cat(
            (
                features.gather(o, view_a[i : i + _EVAL_CHUNK]),
                features.gather(o, view_b[i : i + _EVAL_CHUNK]),
            ),
            dim=1,
        )
        outputs.append(head(x.to(device)).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)
