"""The render plan: which classes and objects, their split, their latent seeds -- all from the config.

A plan depends only on the ``render`` config and the source's contents, never on workers or
shards, so every shard of a job array computes the same plan and the same split files.

* Classes: the ``classes`` classes with the most objects (procedural: 3DIEBench's class sizes),
  ties broken by id, then sorted by id; label = position in that sorted list (3DIEBench's rule).
* Objects per class: ``objects_per_class`` (capped by what a mesh source has), or 3DIEBench's
  exact per-class counts with ``class_sizes=3diebench``.
* Split: per class, a seeded permutation; the first ``round(n * val_fraction)`` objects (at least
  one, leaving at least one for train) go to val, or exactly 3DIEBench's val count for procedural
  classes with ``class_sizes=3diebench``. An orbit sweep has a single split, ``orbit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sie.config import RenderConfig
from sie.errors import UsageError
from sie.log import get_logger
from sie.render.procedural import class_by_synset
from sie.render.sources import ObjectRef, ObjectSource, ProceduralSource
from sie.seeding import derive_seed

__all__ = ["PlannedObject", "RenderPlan", "build_plan", "latent_seed", "split_counts"]

_log = get_logger(__name__)


@dataclass(frozen=True)
class PlannedObject:
    """One object to render: its place in the plan, its split and where its mesh comes from."""

    index: int
    ref: ObjectRef
    split: str

    @property
    def key(self) -> str:
        """``'SYNSET/OBJ'``, the object's directory relative to the dataset root."""
        return f"{self.ref.class_id}/{self.ref.object_id}"


@dataclass(frozen=True)
class RenderPlan:
    """Everything to render, in plan order (class by class, objects sorted by id)."""

    objects: list[PlannedObject]
    class_ids: list[str]
    class_names: dict[str, str]
    skipped_classes: list[dict[str, str]] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        return sorted({o.split for o in self.objects})


def latent_seed(seed: int, class_id: str, object_id: str) -> int:
    """Seed of an object's latent stream: a pure function of (generator seed, class, object)."""
    return derive_seed(seed, "latents", class_id, object_id)


def split_counts(n: int, val_fraction: float) -> tuple[int, int]:
    """(train, val) object counts of a class of ``n`` objects: at least one of each (needs n >= 2)."""
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    return n - n_val, n_val


def _ranked_classes(source: ObjectSource, cfg: RenderConfig) -> list[str]:
    ids = source.class_ids()

    def size(class_id: str) -> int:
        if isinstance(source, ProceduralSource):
            return class_by_synset(class_id).count
        return source.available(class_id) or 0

    return sorted(ids, key=lambda c: (-size(c), c))


def build_plan(source: ObjectSource, cfg: RenderConfig) -> RenderPlan:
    """The plan for ``cfg`` over ``source``.

    Raises:
        UsageError: the source has fewer usable classes than asked for, or a class has too few
            objects for a train/val split (unless ``skip_bad``: the class is then left out and
            listed in ``skipped_classes``); for an unusable class folder, likewise.
    """
    orbit = bool(cfg.orbit_factor)
    if cfg.class_sizes == "3diebench":
        _log.info(
            "class sizes: 3DIEBench's per-class counts (render.objects_per_class=%d is not used)",
            cfg.objects_per_class,
        )
    skipped: list[dict[str, str]] = []
    for problem in source.problems:
        if not cfg.skip_bad:
            raise UsageError(
                f"--source {source.spec}: {problem.reason} (use --skip-bad to leave the class out)"
            )
        skipped.append({"class": problem.class_id, "path": problem.path, "reason": problem.reason})
    ranked = _ranked_classes(source, cfg)
    if len(ranked) < cfg.classes:
        raise UsageError(
            f"--classes {cfg.classes}: --source {source.spec} has only {len(ranked)} usable classes"
            f" ({', '.join(ranked[:10])}{', ...' if len(ranked) > 10 else ''})"
        )
    chosen: list[str] = []
    sizes: dict[str, tuple[int, int | None]] = {}  # class -> (objects, val objects or None = by fraction)
    for class_id in ranked:
        if len(chosen) == cfg.classes:
            break
        exact_val: int | None = None
        if cfg.class_sizes == "3diebench":
            if isinstance(source, ProceduralSource):
                cls = class_by_synset(class_id)
                n, exact_val = cls.count, cls.val
            else:
                n = source.available(class_id) or 0
        else:
            available = source.available(class_id)
            n = cfg.objects_per_class if available is None else min(cfg.objects_per_class, available)
        if not orbit and n < 2:
            reason = f"class {class_id} has {n} object(s); a train/val split needs at least 2"
            if not cfg.skip_bad:
                raise UsageError(f"--source {source.spec}: {reason} (use --skip-bad to leave the class out)")
            skipped.append({"class": class_id, "path": source.spec, "reason": reason})
            continue
        chosen.append(class_id)
        sizes[class_id] = (n, exact_val)
    if len(chosen) < cfg.classes:
        raise UsageError(
            f"--classes {cfg.classes}: only {len(chosen)} classes of --source {source.spec} can be used"
        )
    class_ids = sorted(chosen)
    objects: list[PlannedObject] = []
    for class_id in class_ids:
        n, exact_val = sizes[class_id]
        refs = source.objects(class_id, n, cfg.seed)
        if orbit:
            assigned = ["orbit"] * len(refs)
        else:
            n_val = exact_val if exact_val is not None else split_counts(len(refs), cfg.val_fraction)[1]
            order = np.random.default_rng(derive_seed(cfg.seed, "split", class_id)).permutation(len(refs))
            val = set(order[:n_val].tolist())
            assigned = ["val" if i in val else "train" for i in range(len(refs))]
        for ref, split in zip(refs, assigned, strict=True):
            objects.append(PlannedObject(len(objects), ref, split))
    names = {c: source.class_name(c) for c in class_ids}
    return RenderPlan(objects=objects, class_ids=class_ids, class_names=names, skipped_classes=skipped)
