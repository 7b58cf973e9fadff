"""Reading a packed store written by ``sie pack`` (see :mod:`sie.data.pack` for how it is written).

Layout of a store ``OUT`` at resolution R (all arrays are ``.npy`` files, memory-mapped on read)::

    OUT/manifest.json               format, version, resolution, classes, per-split sizes, every
                                    file's byte size and sha256, and the manifest's own checksum
    OUT/SPLIT/images-00000.npy ...  uint8 (n, V, 3, R, R): n objects per shard, object-major, views
                                    in order, channels first (a view of an object is one contiguous
                                    3*R*R block, so reading K views is K memcpy's and no decode)
    OUT/SPLIT/rows.npy              int64 (N,): row of each object in the concatenated shards
                                    (objects found broken while packing with --skip-bad have no row)
    OUT/SPLIT/latents.npy           float64 (N, V, L)
    OUT/SPLIT/labels.npy            int64 (N,)
    OUT/SPLIT/object_ids.npy        str (N,) 'SYNSET/OBJ'

Opening validates the store: the manifest's checksum, the format version, the exact byte size of
every file (a truncated or foreign file is refused), the sha256 of the small arrays, and, when the
source dataset is still where it was packed from, that its split files and its render settings
(``dataset.json``) have not changed (stale). A store whose pack was interrupted has no manifest yet
and is refused with a hint to resume. :func:`verify_store` also hashes every image shard
(``sie data check OUT``).

A split's identity (``manifest_hash``, :func:`store_identity`) is a hash of the manifest's own content
for it: the resolution, the class list, V, L, the source's identity and the sha256 of every file,
image shards included (computed once by ``sie pack``). Two stores of the same data at different
resolutions, or packed from two renders of the same objects, therefore never share an identity, and
opening a store costs no hashing beyond the small arrays.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sie.data import problems as P
from sie.data.problems import Problem
from sie.data.raw import RENDER_MANIFEST, render_identity
from sie.data.source import ViewSource
from sie.errors import UsageError
from sie.files import file_sha256
from sie.log import get_logger

__all__ = [
    "FORMAT",
    "MANIFEST",
    "PLAN",
    "VERSION",
    "PackedSource",
    "file_sha256",
    "is_packed_store",
    "manifest_checksum",
    "read_manifest",
    "store_identity",
    "verify_store",
]

_log = get_logger(__name__)

FORMAT = "sie-packed-store"
VERSION = 1
MANIFEST = "manifest.json"
PLAN = "pack-plan.json"
_SMALL_ARRAYS = ("rows.npy", "latents.npy", "labels.npy", "object_ids.npy")


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, without its ``checksum`` field."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def is_packed_store(root: Path) -> bool:
    """True for a (possibly unfinished) packed store; a 3DIEBench layout has split files at its top."""
    if not ((root / MANIFEST).is_file() or (root / PLAN).is_file()):
        return False
    return not any(root.glob("*_images.npy"))


def read_manifest(root: Path) -> dict[str, Any]:
    """The validated manifest of a complete store (UsageError naming the file otherwise)."""
    path = root / MANIFEST
    if not path.is_file():
        if (root / PLAN).is_file():
            raise UsageError(
                f"{path}: missing; {root} is an unfinished packed store (the pack was interrupted); "
                "re-run the same `sie pack` command to resume it"
            )
        raise UsageError(f"{path}: missing; expected a packed store written by `sie pack`")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable manifest ({exc}); re-run `sie pack`") from None
    if manifest.get("format") != FORMAT:
        raise UsageError(f"{path}: not a packed-store manifest (format {manifest.get('format')!r})")
    if manifest.get("version") != VERSION:
        raise UsageError(
            f"{path}: packed-store version {manifest.get('version')}; this sie reads version {VERSION}; "
            "re-run `sie pack` to rebuild the store"
        )
    if manifest.get("checksum") != manifest_checksum(manifest):
        raise UsageError(
            f"{path}: checksum mismatch (the manifest was edited or is corrupt); re-run `sie pack`"
        )
    return manifest


def _check_sizes(root: Path, split: str, files: dict[str, dict[str, Any]]) -> list[Problem]:
    out = []
    for name, info in files.items():
        path = root / split / name
        if not path.is_file():
            out.append(Problem(P.STORE, path, "missing; expected by manifest.json", split=split))
        elif path.stat().st_size != info["bytes"]:
            detail = (
                f"{path.stat().st_size} bytes, manifest.json says {info['bytes']} (truncated or stale); "
                "re-run `sie pack`"
            )
            out.append(Problem(P.STORE, path, detail, split=split))
    return out


def _check_hashes(
    root: Path, split: str, files: dict[str, dict[str, Any]], names: Sequence[str]
) -> list[Problem]:
    out = []
    for name in names:
        path = root / split / name
        if file_sha256(path) != files[name]["sha256"]:
            detail = "contents differ from the sha256 in manifest.json (corrupt or stale); re-run `sie pack`"
            out.append(Problem(P.STORE, path, detail, split=split))
    return out


def store_identity(manifest: dict[str, Any], split: str) -> str:
    """The identity of one split of a store (its ``manifest_hash``): a hash of what its manifest says
    about the pixels and targets (resolution, classes, V, L, the source's identity, every file's sha256)."""
    info = manifest["splits"][split]
    payload = {
        "identity": "sie packed split",
        "version": manifest.get("version"),
        "resolution": manifest["resolution"],
        "class_names": manifest["class_names"],
        "views_per_object": info["views_per_object"],
        "latent_size": info["latent_size"],
        "source_hash": info["source_hash"],
        "files": {name: f["sha256"] for name, f in sorted(info["files"].items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _check_source(manifest: dict[str, Any], split: str) -> Problem | None:
    """A problem if the source dataset is still on disk and its split files or its render settings
    (``dataset.json``, recorded by stores packed since it counts) changed since packing."""
    info = manifest["splits"][split]
    files = {Path(f): sha for f, sha in info["source_split_files"].items()}
    if not files or not all(f.is_file() for f in files):
        return None  # source moved or deleted: the store stands alone
    detail = "changed since the store was packed (stale store); re-run `sie pack` to rebuild it"
    for path, sha in files.items():
        if file_sha256(path) != sha:
            return Problem(P.STORE, path, detail, split=split)
    if "source_render" in info:
        source = Path(manifest["plan"]["source"])
        try:
            current = render_identity(source)
        except UsageError:
            current = "unreadable"
        if current != info["source_render"]:
            return Problem(P.STORE, source / RENDER_MANIFEST, detail, split=split)
    return None


def verify_store(root: Path) -> list[Problem]:
    """Every problem of a store: manifest, sizes, and the sha256 of every file (reads everything)."""
    try:
        manifest = read_manifest(root)
    except UsageError as exc:
        return [Problem(P.STORE, root / MANIFEST, str(exc).split(": ", 1)[-1])]
    out: list[Problem] = []
    for split, info in manifest["splits"].items():
        sized = _check_sizes(root, split, info["files"])
        out.extend(sized)
        bad = {p.path.name for p in sized}
        out.extend(_check_hashes(root, split, info["files"], [n for n in info["files"] if n not in bad]))
        stale = _check_source(manifest, split)
        if stale is not None:
            out.append(stale)
    return out


def _problem_from_dict(d: dict[str, Any]) -> Problem:
    return Problem(d["kind"], Path(d["path"]), d["detail"], d.get("split", ""), d.get("object_index"))


class PackedSource(ViewSource):
    """A split of a packed store; use :meth:`open` (or :func:`sie.data.open_split`).

    Image shards are memory-mapped lazily in each process (workers reopen them after pickling), so
    reading views needs neither PIL nor a file open per sample. ``manifest_hash`` is the split's
    :func:`store_identity`; ``source_hash`` the identity of the source split it was packed from.
    """

    memory_mapped = True

    def __init__(self, root: Path, split: str, manifest: dict[str, Any]) -> None:
        info = manifest["splits"][split]
        d = root / split
        self.root = root
        self.split = split
        self.resolution = int(manifest["resolution"])
        self.image_size = (self.resolution, self.resolution)
        self.views_per_object = int(info["views_per_object"])
        self.latent_size = int(info["latent_size"])
        self.class_names = list(manifest["class_names"])
        self.manifest_hash = store_identity(manifest, split)
        self.source_hash = str(info["source_hash"])
        self.excluded = [_problem_from_dict(p) for p in info["excluded"]]
        self.shard_size = int(info["shard_size"])
        self._shard_files = [d / name for name in info["shards"]]
        self._rows = np.load(d / "rows.npy")
        self._latents = np.load(d / "latents.npy")
        self.labels = np.load(d / "labels.npy")
        self.object_ids = [str(s) for s in np.load(d / "object_ids.npy")]
        self._shards: list[np.ndarray] | None = None

    @classmethod
    def open(cls, root: Path, split: str = "train", *, skip_bad: bool = False) -> PackedSource:
        """Validate the store (sizes, checksums, staleness) and open ``split``; UsageError if refused."""
        manifest = read_manifest(root)
        if split not in manifest["splits"]:
            raise UsageError(
                f"{root / MANIFEST}: no split '{split}' in this packed store; it has "
                f"{', '.join(sorted(manifest['splits']))}"
            )
        files = manifest["splits"][split]["files"]
        problems = _check_sizes(root, split, files)
        if not problems:
            problems = _check_hashes(root, split, files, [n for n in _SMALL_ARRAYS if n in files])
        stale = _check_source(manifest, split)
        if stale is not None:
            problems.append(stale)
        if problems:
            raise UsageError(
                str(problems[0]) + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            )
        source = cls(root, split, manifest)
        if source.excluded:
            _log.warning(
                "packed store %s [%s]: %d object(s) were excluded when it was packed with --skip-bad",
                root,
                split,
                len({(p.split, p.object_index, str(p.path.parent)) for p in source.excluded}),
            )
        return source

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_shards"] = None  # memory maps are reopened in the receiving process
        return state

    def _shard(self, index: int) -> np.ndarray:
        if self._shards is None:
            self._shards = [np.load(f, mmap_mode="r") for f in self._shard_files]
        return self._shards[index]

    @property
    def latents(self) -> np.ndarray:
        latents: np.ndarray = self._latents
        return latents

    def read_latents(self, obj: int, views: Sequence[int]) -> np.ndarray:
        return np.asarray(self._latents[obj, list(views)])

    def read_views(self, obj: int, views: Sequence[int]) -> Tensor:
        row = int(self._rows[obj])
        shard = self._shard(row // self.shard_size)
        return torch.from_numpy(np.ascontiguousarray(shard[row % self.shard_size, list(views)]))
