"""``sie pack``: convert a 3DIEBench-layout dataset into a packed store at one resolution.

Every JPEG is decoded once (PIL, as the reference), resized to R x R (antialiased, the loader's own
:func:`~sie.data.transforms.resize_uint8`) and written as uint8 into shards of about
``shard_bytes`` each (format: :mod:`sie.data.packed`). Shards are converted in parallel by
``workers`` processes with a progress bar. Each shard is written to ``*.tmp`` and renamed when
complete, then a small sidecar ``images-XXXXX.json`` (sizes, sha256, broken objects) is renamed
into place: a shard counts as finished only when both exist, so re-running the same command after
an interruption redoes only unfinished shards. ``manifest.json`` is written last; until it exists
the store is refused by readers.

With ``skip_bad``, objects with problems (found by the directory scan, or while decoding) are
excluded and listed in the manifest; without it the first problem stops the pack, naming the file.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sie import __version__
from sie.data.packed import (
    FORMAT,
    MANIFEST,
    PLAN,
    VERSION,
    file_sha256,
    is_packed_store,
    manifest_checksum,
)
from sie.data.problems import BadFileError
from sie.data.raw import IDENTITY_VERSION, RawSource, check_image_size, decode_image, load_latent
from sie.data.splits import find_split_names
from sie.data.transforms import resize_uint8
from sie.errors import UsageError
from sie.files import atomic_write, atomic_write_text
from sie.log import get_logger

__all__ = ["DEFAULT_SHARD_BYTES", "pack_dataset"]

_log = get_logger(__name__)

DEFAULT_SHARD_BYTES = 256 << 20


@dataclass(frozen=True)
class _ShardTask:
    """Everything a worker needs to write one shard (picklable)."""

    src: str
    out_dir: str
    shard: int
    start: int
    object_ids: tuple[str, ...]
    views: int
    latent_size: int
    image_size: tuple[int, int]
    resolution: int
    skip_bad: bool

    @property
    def images(self) -> Path:
        return Path(self.out_dir) / f"images-{self.shard:05d}.npy"

    @property
    def latents(self) -> Path:
        return Path(self.out_dir) / f"latents-{self.shard:05d}.npy"

    @property
    def sidecar(self) -> Path:
        return Path(self.out_dir) / f"images-{self.shard:05d}.json"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as handle:
        np.save(handle, array, allow_pickle=False)


def _shard_done(task: _ShardTask) -> bool:
    if not (task.sidecar.is_file() and task.images.is_file() and task.latents.is_file()):
        return False
    try:
        info = json.loads(task.sidecar.read_text())
    except (OSError, ValueError):
        return False
    return bool(info.get("bytes") == task.images.stat().st_size)


def _pack_shard(task: _ShardTask) -> int:
    """Decode, resize and write one shard (runs in a worker process); returns its object count."""
    torch.set_num_threads(1)  # one process per core already
    src, n, v, r = Path(task.src), len(task.object_ids), task.views, task.resolution
    tmp = task.images.with_name(task.images.name + ".tmp")
    images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, v, 3, r, r))
    latents = np.zeros((n, v, task.latent_size), dtype=np.float64)
    bad: list[dict[str, Any]] = []
    for j, entry in enumerate(task.object_ids):
        obj_dir = src / entry
        try:
            pixels = []
            for view in range(v):
                path = obj_dir / f"image_{view}.jpg"
                pixels.append(decode_image(path))
                check_image_size(path, pixels[-1], task.image_size)
                latents[j, view] = load_latent(obj_dir / f"latent_{view}.npy", task.latent_size)
            batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
            images[j] = resize_uint8(batch, r).numpy()
        except BadFileError as exc:
            if not task.skip_bad:
                raise
            bad.append(asdict(exc.problem) | {"path": str(exc.problem.path), "object_index": task.start + j})
            images[j] = 0
            latents[j] = 0.0
    images.flush()
    del images
    _fsync(tmp)
    _save_npy_atomic(task.latents, latents)
    os.replace(tmp, task.images)
    sidecar = {"bytes": task.images.stat().st_size, "sha256": file_sha256(task.images), "bad": bad}
    _write_json_atomic(task.sidecar, sidecar)
    return n


def _run_tasks(tasks: Sequence[_ShardTask], workers: int, total: int, progress: bool) -> None:
    with tqdm(total=total, unit="obj", desc="sie pack", disable=not progress, dynamic_ncols=True) as bar:
        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                bar.update(_pack_shard(task))
            return
        with multiprocessing.get_context().Pool(min(workers, len(tasks))) as pool:
            for count in pool.imap_unordered(_pack_shard, tasks):
                bar.update(count)


def _plan(sources: dict[str, RawSource], src: Path, resolution: int, shard_bytes: int) -> dict[str, Any]:
    """What the store will hold. Equal plans give identical shards, so a pack may resume on it; the
    ``skip_bad`` flag is not part of it (shards written without it are valid with it, and the reverse
    is checked from the shards' lists of broken objects)."""
    splits = {}
    for name, s in sources.items():
        object_bytes = s.views_per_object * 3 * resolution * resolution
        splits[name] = {
            "num_objects": s.num_objects,
            "object_ids_sha256": hashlib.sha256("\n".join(s.object_ids).encode()).hexdigest(),
            "views_per_object": s.views_per_object,
            "latent_size": s.latent_size,
            "image_size": list(s.image_size),
            "shard_size": max(1, shard_bytes // object_bytes),
            "source_split_files": {str(f.resolve()): file_sha256(f) for f in s.split_files},
        }
    return {
        "format": FORMAT,
        "version": VERSION,
        "resolution": resolution,
        "source": str(src.resolve()),
        "splits": splits,
    }


def _damaged_files(out: Path, manifest: dict[str, Any]) -> list[str]:
    return [
        f"{split}/{name}"
        for split, info in manifest["splits"].items()
        for name, f in info["files"].items()
        if not (out / split / name).is_file() or (out / split / name).stat().st_size != f["bytes"]
    ]


def _check_out(out: Path, plan: dict[str, Any]) -> bool:
    """True if ``out`` already holds this exact, complete store; UsageError if it holds something else.

    A complete store of the same plan with missing or truncated files loses its manifest, so the
    pack resumes and rewrites just those shards.
    """
    if (out / MANIFEST).is_file():
        try:
            manifest = json.loads((out / MANIFEST).read_text())
        except (OSError, ValueError):
            manifest = {"plan": plan, "splits": {}}  # unreadable: resume from the plan and shards
        if manifest.get("plan") == plan and (out / PLAN).is_file():
            damaged = _damaged_files(out, manifest)
            if not damaged:
                return True
            _log.warning(
                "%s: %d damaged file(s) (%s); repacking them", out, len(damaged), ", ".join(damaged[:5])
            )
            (out / MANIFEST).unlink()
            return False
        raise UsageError(
            f"{out / MANIFEST}: {out} already holds a packed store of other data, splits, resolution or "
            "--skip-bad exclusions; choose another OUT or delete it"
        )
    if (out / PLAN).is_file():
        try:
            existing = json.loads((out / PLAN).read_text())
        except (OSError, ValueError):
            existing = None
        if existing != plan:
            raise UsageError(
                f"{out / PLAN}: {out} holds an unfinished pack of other data, splits, resolution or "
                "--skip-bad exclusions; re-run that command to finish it, or choose another OUT or delete it"
            )
        return False
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: exists and is not an empty directory or a packed store; choose another OUT")
    return False


def _refuse_excluded_without_skip_bad(splits: dict[str, Any], skip_bad: bool) -> None:
    excluded = [e for info in splits.values() for e in info["excluded"]]
    if excluded and not skip_bad:
        e = excluded[0]
        raise UsageError(
            f"{e['path']}: {e['kind']}: {e['detail']} (this store excludes {len(excluded)} broken file(s); "
            "pass --skip-bad to accept it)"
        )


def _refuse_changed_source(
    out: Path, src: Path, manifest: dict[str, Any], sources: dict[str, RawSource]
) -> None:
    """UsageError if ``src`` changed since ``out`` was packed from it in ways the plan does not see
    (re-rendered with other settings under the same split files). Stores written before the
    source's identity covered that (no ``identity_version``) are taken as they are."""
    if manifest.get("identity_version") != IDENTITY_VERSION:
        return
    for name, source in sources.items():
        info = manifest["splits"][name]
        recorded = info["source_hash"]
        current = source.identity(source.excluded_ids + list(info.get("decode_excluded_ids", [])))
        if recorded != current:
            raise UsageError(
                f"{out / MANIFEST}: {out} was packed from an earlier state of {src} (split '{name}': source "
                f"identity {recorded}, now {current}: its render settings or images changed); delete {out} "
                "or choose another OUT to pack the dataset as it is now"
            )


def _file_info(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _assemble_split(
    out: Path, name: str, source: RawSource, tasks: Sequence[_ShardTask], shard_size: int
) -> dict[str, Any]:
    """Concatenate the shards' small outputs, write the split's arrays; returns its manifest entry."""
    d = out / name
    sidecars = [json.loads(t.sidecar.read_text()) for t in tasks]
    bad_rows = {b["object_index"] for s in sidecars for b in s["bad"]}
    rows = np.array([i for i in range(source.num_objects) if i not in bad_rows], dtype=np.int64)
    latents = np.concatenate([np.load(t.latents) for t in tasks])[rows]
    _save_npy_atomic(d / "rows.npy", rows)
    _save_npy_atomic(d / "latents.npy", latents)
    _save_npy_atomic(d / "labels.npy", source.labels[rows])
    _save_npy_atomic(d / "object_ids.npy", np.array([source.object_ids[i] for i in rows], dtype=str))
    files = {
        t.images.name: {"bytes": s["bytes"], "sha256": s["sha256"]}
        for t, s in zip(tasks, sidecars, strict=True)
    }
    for array in ("rows.npy", "latents.npy", "labels.npy", "object_ids.npy"):
        files[array] = _file_info(d / array)
    excluded = [asdict(p) | {"path": str(p.path)} for p in source.excluded]
    excluded += [b for s in sidecars for b in s["bad"]]
    decode_excluded = [source.object_ids[i] for i in sorted(bad_rows)]
    return {
        "num_objects": len(rows),
        "views_per_object": source.views_per_object,
        "latent_size": source.latent_size,
        "shard_size": shard_size,
        "shards": [t.images.name for t in tasks],
        "files": files,
        "excluded": excluded,
        "source_hash": source.identity(source.excluded_ids + decode_excluded),
        "source_render": source.render_identity,
        "decode_excluded_ids": decode_excluded,
        "source_split_files": {str(f.resolve()): file_sha256(f) for f in source.split_files},
    }


def pack_dataset(
    src: str | Path,
    out: str | Path,
    resolution: int,
    *,
    workers: int | None = None,
    splits: Sequence[str] | None = None,
    skip_bad: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: bool = True,
) -> Path:
    """Pack the splits of the 3DIEBench-layout dataset ``src`` into a store ``out`` at ``resolution`` px.

    Re-running the same call resumes an interrupted pack (finished shards are kept) and returns at once
    for a finished one. ``workers`` processes convert shards (default: every core; 0 or 1: this process).
    """
    src, out = Path(src), Path(out)
    if not isinstance(resolution, int) or not 8 <= resolution <= 4096:
        raise UsageError(f"--resolution {resolution}: expected an integer number of pixels in [8, 4096]")
    if is_packed_store(src):
        raise UsageError(f"{src}: is already a packed store; `sie pack` reads a 3DIEBench-layout dataset")
    if not src.is_dir():
        raise UsageError(f"{src}: no such dataset directory")
    names = list(splits) if splits else find_split_names(src)
    if not names:
        raise UsageError(
            f"{src}: no split files (NAME_images.npy); expected train_images.npy and val_images.npy"
        )
    sources = {name: RawSource.open(src, name, skip_bad=skip_bad) for name in names}
    plan = _plan(sources, src, resolution, shard_bytes)
    if _check_out(out, plan):
        done = json.loads((out / MANIFEST).read_text())
        _refuse_excluded_without_skip_bad(done["splits"], skip_bad)
        _refuse_changed_source(out, src, done, sources)
        _log.info("%s: already a complete packed store of %s at %d px; nothing to do", out, src, resolution)
        return out
    for name in names:
        (out / name).mkdir(parents=True, exist_ok=True)
    _write_json_atomic(out / PLAN, plan)

    all_tasks: dict[str, list[_ShardTask]] = {}
    for name, s in sources.items():
        size = plan["splits"][name]["shard_size"]
        all_tasks[name] = [
            _ShardTask(
                str(src),
                str(out / name),
                k,
                start,
                tuple(s.object_ids[start : start + size]),
                s.views_per_object,
                s.latent_size,
                s.image_size,
                resolution,
                skip_bad,
            )
            for k, start in enumerate(range(0, s.num_objects, size))
        ]
    todo = [t for tasks in all_tasks.values() for t in tasks if not _shard_done(t)]
    done = sum(len(tasks) for tasks in all_tasks.values()) - len(todo)
    if done:
        _log.info("resuming: %d shard(s) already finished, %d to do", done, len(todo))
    workers = os.cpu_count() or 1 if workers is None else workers
    _run_tasks(todo, workers, sum(len(t.object_ids) for t in todo), progress)
    if not skip_bad:  # shards kept from an earlier run with --skip-bad may hold broken objects
        for t in (t for tasks in all_tasks.values() for t in tasks):
            bad = json.loads(t.sidecar.read_text())["bad"]
            if bad:
                raise UsageError(
                    f"{bad[0]['path']}: {bad[0]['kind']}: {bad[0]['detail']} (pass --skip-bad to exclude it)"
                )

    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created_by": f"sie {__version__}",
        "resolution": resolution,
        "skip_bad": skip_bad,
        "identity_version": IDENTITY_VERSION,
        "class_names": sources[names[0]].class_names,
        "plan": plan,
        "splits": {
            name: _assemble_split(
                out, name, sources[name], all_tasks[name], plan["splits"][name]["shard_size"]
            )
            for name in names
        },
    }
    manifest["checksum"] = manifest_checksum(manifest)
    # The plan, shard latents and sidecars stay: they let a later run repair a damaged store.
    _write_json_atomic(out / MANIFEST, manifest)
    total_bad = sum(len(m["excluded"]) for m in manifest["splits"].values())
    _log.info(
        "packed %s -> %s at %d px: %s%s",
        src,
        out,
        resolution,
        ", ".join(f"{n} {m['num_objects']} objects" for n, m in manifest["splits"].items()),
        f" ({total_bad} problem(s) excluded, listed in manifest.json)" if total_bad else "",
    )
    return out
