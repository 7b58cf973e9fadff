"""One-off feature extraction: every view of every object of a split, through the frozen model, cached.

For a split with N objects of V views the cache holds

* ``representations`` (N, V, D) float32: the backbone output ``h`` (the probes slice their part);
* ``embeddings`` (N, V, E) float32, for methods with a predictor: ``method.embed_equivariant(h)``,
  the equivariant projector's output that retrieval (MRR/H@k, PRE) compares with predictions.

The model runs in **eval mode** (BatchNorm uses its running statistics), so a view's features do not
depend on the batch it is in and can be computed once and reused by every probe, epoch and seed.

Cache files are safetensors, named ``{split}-{R}px-{checkpoint hash}-{manifest hash}.safetensors``
under ``RUN/eval/features/``, with their key in the file's metadata (format version, checkpoint hash,
dataset manifest hash, split, resolution, shape). The manifest hash is the split's identity
(:attr:`sie.data.ViewSource.manifest_hash`: split files, render settings, pack resolution and file
hashes, ...). A file is used only if every field of its key matches the current checkpoint and
dataset; it is never mixed in otherwise. ``RUN/eval/features/datasets.json`` records, per dataset
location and split, the manifest hash whose features were last used there.

Another cache file of the same split is **stale** when it was written by an older feature format (its
dataset identity was weaker), when it is of the same dataset (same manifest hash) with another key
(another checkpoint, e.g. an overwritten one, resolution or size), or when it is of the dataset that
this location held before (``datasets.json``: the store was packed again, the directory rendered
again) and no other recorded location still holds that dataset. Stale files are deleted once the new
features are written; with ``refuse=True`` they are an error listing the differences, before any
extraction. Caches of other datasets are kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from sie.errors import UsageError
from sie.files import atomic_write_text
from sie.log import get_logger

if TYPE_CHECKING:
    from sie.data.source import ViewSource
    from sie.methods.base import Method

__all__ = [
    "FEATURES_FORMAT",
    "FEATURES_VERSION",
    "LOCATIONS",
    "FeatureKey",
    "SplitFeatures",
    "extract_features",
    "load_or_extract_features",
    "read_feature_key",
    "read_locations",
    "refuse_stale",
    "stale_reason",
]

FEATURES_FORMAT = "sie.eval.features"
FEATURES_VERSION = 2
"""2: the manifest hash covers render settings, pack resolution and file hashes (1: split files only)."""

_log = get_logger(__name__)


@dataclass(frozen=True)
class FeatureKey:
    """Everything the cached features depend on; a cache file is valid only for an identical key."""

    checkpoint_hash: str
    manifest_hash: str
    split: str
    resolution: int
    num_objects: int
    views_per_object: int
    format: str = FEATURES_FORMAT
    version: int = FEATURES_VERSION
    representation: str = "backbone"  # Method.evaluation_representation_name

    def filename(self) -> str:
        safe_split = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.split)
        tag = "" if self.representation == "backbone" else f"-{self.representation}"
        return (
            f"{safe_split}-{self.resolution}px-{self.checkpoint_hash[:16]}-{self.manifest_hash[:16]}{tag}"
            ".safetensors"
        )

    def metadata(self) -> dict[str, str]:
        # The default representation is left out, so caches written before the field existed still match.
        return {k: str(v) for k, v in asdict(self).items() if not (k == "representation" and v == "backbone")}

    def differences(self, metadata: dict[str, str]) -> list[str]:
        """``'field: file has X, expected Y'`` for every field that differs from a file's metadata."""
        expected = self.metadata()
        return [
            f"{k}: file has {metadata.get(k, '<missing>')!r}, expected {v!r}"
            for k, v in expected.items()
            if metadata.get(k) != v
        ]


@dataclass
class SplitFeatures:
    """Cached features of one split, with the labels and latents they belong to (same object order)."""

    key: FeatureKey
    representations: Tensor  # (N, V, D) float32
    embeddings: Tensor | None  # (N, V, E) float32, or None without a predictor
    labels: Tensor  # (N,) int64
    latents: Tensor  # (N, V, L) float64
    path: Path | None = None
    seconds: float = 0.0  # extraction wall time (0 when read from the cache)

    @property
    def num_objects(self) -> int:
        return int(self.representations.shape[0])

    @property
    def views_per_object(self) -> int:
        return int(self.representations.shape[1])


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    source: ViewSource,
    *,
    resolution: int,
    batch_size: int,
    device: torch.device,
    embed: Callable[[Tensor], Tensor] | None = None,
    represent: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Representations (N, V, D) and, if ``embed`` is given, ``embed(h)`` (N, V, E) of every view of a split.

    ``backbone`` runs in eval mode (it is switched to it); ``source`` is a :class:`sie.data.ViewSource`
    read with ``sie.data.iterate_all_views`` (object-major, resized to ``resolution``, normalised).
    ``represent`` (images -> (B, D)), when given, replaces ``backbone(images)`` (a method's
    :meth:`~sie.methods.base.Method.evaluation_representation`). Both outputs are float32 on the CPU.
    """
    from sie.data.loader import iterate_all_views

    num_objects, views = source.num_objects, source.views_per_object
    backbone.eval()
    reps: Tensor | None = None
    embs: Tensor | None = None
    filled = torch.zeros(num_objects, views, dtype=torch.bool)
    for images, objects, view_idx in iterate_all_views(source, batch_size=batch_size, resolution=resolution):
        images = images.to(device, non_blocking=True)
        h = (represent(images) if represent is not None else backbone(images)).float()
        if reps is None:
            reps = torch.empty(num_objects, views, h.shape[1], dtype=torch.float32)
        reps[objects, view_idx] = h.cpu()
        if embed is not None:
            z = embed(h).float().cpu()
            if embs is None:
                embs = torch.empty(num_objects, views, z.shape[1], dtype=torch.float32)
            embs[objects, view_idx] = z
        filled[objects, view_idx] = True
    if reps is None or not bool(filled.all()):
        missing = int((~filled).sum())
        raise UsageError(
            f"{source.root} [{source.split}]: feature extraction found no images for {missing} views"
        )
    return reps, embs


def read_feature_key(path: str | Path) -> dict[str, str]:
    """The metadata of a cached feature file (without loading its tensors)."""
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


LOCATIONS = "datasets.json"
"""In the cache directory: ``{location: {split: manifest hash}}``, what each dataset location held when
its features were last used (tells a dataset changed in place from another dataset)."""


def _location(source: ViewSource) -> str:
    return str(Path(source.root).resolve())


def read_locations(cache_dir: str | Path) -> dict[str, dict[str, str]]:
    """The cache's record of dataset locations (empty when missing or unreadable)."""
    try:
        data = json.loads((Path(cache_dir) / LOCATIONS).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(loc): {str(k): str(v) for k, v in entry.items()}
        for loc, entry in data.items()
        if isinstance(entry, dict)
    }


def _record_location(cache_dir: Path, location: str, split: str, manifest_hash: str) -> None:
    locations = read_locations(cache_dir)
    if locations.get(location, {}).get(split) == manifest_hash:
        return
    locations.setdefault(location, {})[split] = manifest_hash
    atomic_write_text(cache_dir / LOCATIONS, json.dumps(locations, indent=1, sort_keys=True) + "\n")


def stale_reason(
    metadata: dict[str, str], key: FeatureKey, location: str, locations: dict[str, dict[str, str]]
) -> str | None:
    """Why a cache file of ``metadata`` is stale for ``key`` of the dataset at ``location`` (``locations``:
    :func:`read_locations`), or None when it is not (it matches, or is of another split or dataset)."""
    if metadata.get("format") != FEATURES_FORMAT or metadata.get("split") != key.split:
        return None
    if metadata.get("version") != str(key.version):
        return (
            f"written by an older sie (features version {metadata.get('version')!r}, expected "
            f"{key.version!r}: its dataset identity did not cover render settings and pack resolution)"
        )
    diffs = key.differences(metadata)
    if not diffs:
        return None
    held = metadata.get("manifest_hash")
    if held == key.manifest_hash:
        return "; ".join(diffs)
    if locations.get(location, {}).get(key.split) != held:
        return None  # features of another dataset
    if any(entry.get(key.split) == held for loc, entry in locations.items() if loc != location):
        return None  # that dataset is still recorded at another location
    return "; ".join(diffs) + f" (the dataset at {location} changed since these features were cached)"


def _stale_files(cache_dir: Path, key: FeatureKey, location: str) -> list[tuple[Path, str]]:
    if not cache_dir.is_dir():
        return []
    locations = read_locations(cache_dir)
    out = []
    for other in sorted(cache_dir.glob("*.safetensors")):
        if other.name == key.filename():
            continue
        try:
            meta = read_feature_key(other)
        except Exception:  # an unreadable file is not ours to judge; leave it
            continue
        reason = stale_reason(meta, key, location, locations)
        if reason is not None:
            out.append((other, reason))
    return out


def refuse_stale(source: ViewSource, key: FeatureKey, cache_dir: str | Path) -> None:
    """UsageError if the cache holds, for ``key``'s split, a file that does not match ``key`` under its
    name, or, without a matching one, a stale file (see the module docstring); nothing otherwise (a
    missing cache is no error: the features are extracted)."""
    cache_dir = Path(cache_dir)
    path = cache_dir / key.filename()
    if path.is_file():
        diffs = key.differences(read_feature_key(path))
        if diffs:
            raise UsageError(
                f"{path}: cached features do not match this checkpoint/dataset: " + "; ".join(diffs)
            )
        return
    location = _location(source)
    stale = _stale_files(cache_dir, key, location)
    if stale:
        other, reason = stale[0]
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        raise UsageError(
            f"{other}: stale cached features of split {key.split!r} for {location}: {reason}{more}; "
            "run without --refuse-stale-features to recompute them"
        )


def load_or_extract_features(
    method: Method,
    source: ViewSource,
    key: FeatureKey,
    cache_dir: str | Path,
    *,
    batch_size: int,
    device: torch.device,
    with_embeddings: bool,
    refuse: bool = False,
) -> SplitFeatures:
    """Read the split's features from the cache when its key matches; else extract and cache them.

    ``refuse=True`` turns a mismatching cache file, or a stale one of this split (see the module
    docstring), into a UsageError listing the differences (:func:`refuse_stale`) instead of
    recomputing. A cache without embeddings when they are needed is recomputed. Stale files are
    deleted after a recomputation.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / key.filename()
    location = _location(source)
    if refuse:
        refuse_stale(source, key, cache_dir)
    labels = torch.as_tensor(np.asarray(source.labels), dtype=torch.int64)
    latents = torch.as_tensor(np.asarray(source.latents), dtype=torch.float64)
    diffs: list[str] = []
    if path.is_file():
        meta = read_feature_key(path)
        diffs = key.differences(meta)
        with safe_open(str(path), framework="pt") as handle:
            names = set(handle.keys())
            if not diffs and (not with_embeddings or "embeddings" in names):
                reps = handle.get_tensor("representations")
                embs = handle.get_tensor("embeddings") if with_embeddings else None
                _log.info("features of %s [%s] read from %s", key.split, key.checkpoint_hash, path)
                _record_location(cache_dir, location, key.split, key.manifest_hash)
                return SplitFeatures(key, reps, embs, labels, latents, path)
    stale = _stale_files(cache_dir, key, location)
    if path.is_file():
        _log.info("recomputing %s: %s", path, "; ".join(diffs) or "embeddings missing")
    for other, reason in stale:
        _log.info("recomputing %s features: %s is stale (%s)", key.split, other.name, reason)
    start = time.perf_counter()
    method.eval()
    reps, embs = extract_features(
        method.backbone,
        source,
        resolution=key.resolution,
        batch_size=batch_size,
        device=device,
        embed=method.embed_equivariant if with_embeddings else None,
        represent=method.evaluation_representation,
    )
    seconds = time.perf_counter() - start
    _log.info(
        "extracted %s features of %d x %d views in %.1f s",
        key.split,
        key.num_objects,
        key.views_per_object,
        seconds,
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tensors = {"representations": reps.contiguous()}
    if embs is not None:
        tensors["embeddings"] = embs.contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=key.metadata())
    tmp.replace(path)
    _record_location(cache_dir, location, key.split, key.manifest_hash)
    for other, _ in stale:
        _log.info("removing %s: stale features", other)
        other.unlink(missing_ok=True)
    return SplitFeatures(key, reps, embs, labels, latents, path, seconds)
