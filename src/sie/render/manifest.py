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
from pathlib import Path
from typing import Any

import numpy as np

from sie.config import RenderConfig, config_to_dict
from sie.errors import UsageError
from sie.files import atomic_write, atomic_write_text
from sie.render.plan import RenderPlan
from sie.render.writer import PARTIAL_DIR, STATE_DIR

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "check_output_dir",
    "content_config",
    "dataset_identity",
    "read_manifest",
    "write_json_atomic",
    "write_split_files",
]

MANIFEST_NAME = "dataset.json"
FORMAT_VERSION = 1
"""Version of the generator's output (layout, manifest, sampling); bumped when bytes would change."""

_NOT_CONTENT = ("workers", "device", "backend", "skip_bad")


def content_config(cfg: RenderConfig) -> dict[str, Any]:
    """The render settings that decide the dataset's contents (everything but workers, device, backend, skip_bad)."""
    return {k: v for k, v in config_to_dict(cfg).items() if k not in _NOT_CONTENT}


def dataset_identity(cfg: RenderConfig, plan: RenderPlan) -> str:
    """A stable hash of the content settings and the planned objects (with their splits)."""
    payload = {
        "format": FORMAT_VERSION,
        "config": content_config(cfg),
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


def check_output_dir(root: Path, cfg: RenderConfig, identity: str) -> None:
    """Refuse an output directory that holds something other than this dataset (or a part of it).

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
    if manifest.get("identity") == identity:
        return
    theirs = manifest.get("config", {})
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


def write_split_files(
    root: Path, plan: RenderPlan, excluded: set[str]
) -> tuple[list[str], dict[str, dict[str, int]], list[dict[str, str]]]:
    """Write ``{split}_images.npy`` / ``{split}_labels.npy`` for the plan minus the ``excluded`` objects.

    A class left without a train or a val object (all skipped) is dropped. Labels index the
    remaining classes in sorted order. Entries are ``'/SYNSET/OBJ/'`` as in 3DIEBench.

    Returns:
        (classes kept, per-class object counts per split, dropped classes with reasons).
    """
    splits = plan.splits
    members: dict[str, dict[str, list[str]]] = {c: {s: [] for s in splits} for c in plan.class_ids}
    for obj in plan.objects:
        if obj.key not in excluded:
            members[obj.ref.class_id][obj.split].append(obj.key)
    dropped: list[dict[str, str]] = []
    kept: list[str] = []
    for class_id in plan.class_ids:
        empty = [s for s in splits if not members[class_id][s]]
        if empty:
            dropped.append(
                {
                    "class": class_id,
                    "path": "",
                    "reason": f"no {' or '.join(empty)} object left after skipping",
                }
            )
        else:
            kept.append(class_id)
    label = {c: i for i, c in enumerate(kept)}
    counts = {c: {s: len(members[c][s]) for s in splits} for c in kept}
    for split in splits:
        keys = [k for c in kept for k in members[c][split]]
        images = np.array([f"/{k}/" for k in keys], dtype=str)
        labels = np.array([label[k.split("/")[0]] for k in keys], dtype=np.int64)
        for name, array in ((f"{split}_images.npy", images), (f"{split}_labels.npy", labels)):
            with atomic_write(root / name, durable=False) as handle:
                np.save(handle, array)
    return kept, counts, dropped


def remove_work_dirs(root: Path) -> None:
    """Remove the empty ``.partial`` folder once the dataset is complete (``.render`` keeps the skip notes)."""
    partial = root / PARTIAL_DIR
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    state = root / STATE_DIR
    if state.is_dir() and not any(state.rglob("*")):
        state.rmdir()
