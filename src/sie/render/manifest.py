"""``dataset.json`` (what a rendered dataset is and how it was made), split files, and the guard
that refuses to mix two different datasets in one output directory.

The manifest is optional for readers (DESIGN.md contract 1): the split files alone make the
directory a 3DIEBench-layout dataset. Its ``identity`` is a hash of everything that decides the
dataset's contents (the content-relevant render settings and the planned object list), but not of
how it is produced (workers, shards, device), so every shard of a job array agrees on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sie.config import RenderConfig, config_to_dict
from sie.errors import UsageError
from sie.files import atomic_write, atomic_write_text
from sie.render.plan import RenderPlan, split_counts
from sie.render.sources import normalise_source
from sie.render.writer import PARTIAL_DIR, STATE_DIR
from sie.seeding import derive_seed

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SplitsAfterSkipping",
    "check_output_dir",
    "content_config",
    "dataset_identity",
    "read_manifest",
    "split_after_skipping",
    "write_json_atomic",
    "write_split_files",
]

MANIFEST_NAME = "dataset.json"
FORMAT_VERSION = 1
"""Version of the generator's output (layout, manifest, sampling); bumped when bytes would change."""

_NOT_CONTENT = ("workers", "device", "backend", "skip_bad")


def content_config(cfg: RenderConfig, *, as_spelled: bool = False) -> dict[str, Any]:
    """The render settings that decide the dataset's contents (everything but workers, device, backend,
    skip_bad), with the source's folder made absolute (:func:`~sie.render.sources.normalise_source`), so
    that ``folder:meshes``, ``folder:./meshes/`` and ``folder:/abs/meshes`` name one dataset;
    ``as_spelled`` keeps the spelling of ``cfg`` (how datasets before that normalisation recorded it)."""
    content = {k: v for k, v in config_to_dict(cfg).items() if k not in _NOT_CONTENT}
    if not as_spelled:
        content["source"] = normalise_source(cfg.source)
    if cfg.variant == "T":
        # -T renders placed the object at t (after the rotation) before they followed 3DIEBench-T's
        # R (p + t); marking the composition keeps such a dataset from being resumed as this one.
        content["translation_composition"] = "R(p+t)"
    return content


def dataset_identity(cfg: RenderConfig, plan: RenderPlan, *, as_spelled: bool = False) -> str:
    """A stable hash of the content settings and the planned objects (with their splits)."""
    payload = {
        "format": FORMAT_VERSION,
        "config": content_config(cfg, as_spelled=as_spelled),
        "objects": [[o.key, o.split] for o in plan.objects],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The parsed ``dataset.json`` of ``root``, or None when there is none."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{path}: unreadable manifest ({exc}); delete it or choose another output directory"
        ) from None
    return data


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", durable=False)


def check_output_dir(root: Path, cfg: RenderConfig, identity: str, also_accept: str = "") -> None:
    """Refuse an output directory that holds something other than this dataset (or a part of it).

    ``also_accept`` is a second identity of the same dataset (its identity before the source's
    spelling was normalised), so that datasets rendered before can be resumed.

    Raises:
        UsageError: ``root`` is a file; or holds a manifest of a different dataset (the message
            lists the settings that differ); or is not empty and was not written by ``sie render``.
    """
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root}: exists and is not a directory")
    if not root.is_dir() or not any(root.iterdir()):
        return
    manifest = read_manifest(root)
    if manifest is None:
        entries = sorted(p.name for p in root.iterdir())
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise UsageError(
            f"{root}: not empty ({shown}) and has no {MANIFEST_NAME} from sie render; refusing to write into it"
        )
    if manifest.get("identity") in (identity, also_accept or identity):
        return
    theirs = dict(manifest.get("config", {}))
    if isinstance(theirs.get("source"), str):
        theirs["source"] = normalise_source(theirs["source"])
    ours = content_config(cfg)
    diffs = [
        f"render.{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here"
        for k in sorted(ours)
        if theirs.get(k) != ours.get(k)
    ]
    detail = "; ".join(diffs[:4]) if diffs else "the source's objects differ"
    raise UsageError(
        f"{root} holds a different dataset ({detail}); choose another output directory or delete it"
    )


@dataclass(frozen=True)
class SplitsAfterSkipping:
    """The split files' contents once the skipped objects are left out.

    Attributes:
        kept: the classes that keep an object in every split, sorted (label = position).
        members: ``{split: ['SYNSET/OBJ', ...]}`` in plan order, kept classes only.
        counts: ``{class: {split: objects}}`` of the kept classes.
        dropped: ``{'class', 'path', 'reason'}`` of each class left out.
    """

    kept: list[str]
    members: dict[str, list[str]]
    counts: dict[str, dict[str, int]]
    dropped: list[dict[str, str]]


def split_after_skipping(
    plan: RenderPlan, excluded: set[str], *, seed: int, val_fraction: float
) -> SplitsAfterSkipping:
    """Each class's train/val split drawn among its objects that were not ``excluded``.

    A class with no excluded object keeps the plan's split. In a class with excluded objects the split
    is drawn again among the usable ones, as :func:`~sie.render.plan.build_plan` draws it (a seeded
    permutation, ``round(n * val_fraction)`` val objects, at least one of each), so 5 usable objects
    of 10 still make 4 train + 1 val. A class left with fewer than 2 usable objects (no object at all
    for an orbit sweep) is dropped, with the reason.
    """
    splits = plan.splits
    by_class: dict[str, list[tuple[str, str]]] = {c: [] for c in plan.class_ids}  # (key, split)
    for obj in plan.objects:
        by_class[obj.ref.class_id].append((obj.key, obj.split))
    members: dict[str, list[str]] = {s: [] for s in splits}
    counts: dict[str, dict[str, int]] = {}
    dropped: list[dict[str, str]] = []
    kept: list[str] = []
    for class_id in plan.class_ids:
        planned = by_class[class_id]
        usable = [(key, split) for key, split in planned if key not in excluded]
        skipped = len(planned) - len(usable)
        needed = 1 if splits == ["orbit"] else 2
        if len(usable) < needed:
            reason = (
                f"{len(usable)} of its {len(planned)} objects left after skipping {skipped}; "
                f"a {'sweep' if needed == 1 else 'train/val split'} needs {needed}"
            )
            dropped.append({"class": class_id, "path": "", "reason": reason})
            continue
        if skipped and splits != ["orbit"]:
            n_val = split_counts(len(usable), val_fraction)[1]
            order = np.random.default_rng(derive_seed(seed, "split", class_id)).permutation(len(usable))
            val = set(order[:n_val].tolist())
            usable = [(key, "val" if i in val else "train") for i, (key, _) in enumerate(usable)]
        kept.append(class_id)
        counts[class_id] = {s: 0 for s in splits}
        for key, split in usable:
            members[split].append(key)
            counts[class_id][split] += 1
    return SplitsAfterSkipping(kept, members, counts, dropped)


def write_split_files(root: Path, splits: SplitsAfterSkipping) -> None:
    """Write ``{split}_images.npy`` / ``{split}_labels.npy``: entries ``'/SYNSET/OBJ/'`` as in 3DIEBench,
    labels indexing the kept classes in sorted order."""
    label = {c: i for i, c in enumerate(splits.kept)}
    for split, keys in splits.members.items():
        images = np.array([f"/{k}/" for k in keys], dtype=str)
        labels = np.array([label[k.split("/")[0]] for k in keys], dtype=np.int64)
        for name, array in ((f"{split}_images.npy", images), (f"{split}_labels.npy", labels)):
            with atomic_write(root / name, durable=False) as handle:
                np.save(handle, array)


def remove_work_dirs(root: Path) -> None:
    """Remove the empty ``.partial`` folder once the dataset is complete (``.render`` keeps the skip notes)."""
    partial = root / PARTIAL_DIR
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    state = root / STATE_DIR
    if state.is_dir() and not any(state.rglob("*")):
        state.rmdir()
