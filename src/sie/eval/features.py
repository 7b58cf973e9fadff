"""One-off feature extraction: every view of every object of a split, through the frozen model, cached.

For a split with N objects of V views the cache holds

* ``representations`` (N, V, D) float32: the backbone output ``h`` (the probes slice their part);
* ``embeddings`` (N, V, E) float32, for methods with a predictor: ``method.embed_equivariant(h)``,
  the equivariant projector's output that retrieval (MRR/H@k, PRE) compares with predictions.

The model runs in **eval mode** (BatchNorm uses its running statistics), so a view's features do not
depend on the batch it is in and can be computed once and reused by every probe, epoch and seed.

Cache files are safetensors, named ``{split}-{R}px-{checkpoint hash}-{manifest hash}.safetensors``
under ``RUN/eval/features/``, with their key in the file's metadata (format version, checkpoint hash,
dataset manifest hash, split, resolution, shape). A file is used only if every field of its key
matches the current checkpoint and dataset; otherwise it is recomputed (or, with ``refuse=True``,
refused with the list of differences), never mixed. A file left by an overwritten checkpoint (same
split and dataset, other checkpoint hash) is deleted when the new one is written, since its
checkpoint no longer exists.
"""

from __future__ import annotations

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
from sie.log import get_logger

if TYPE_CHECKING:
    from sie.data.source import ViewSource
    from sie.methods.base import Method

__all__ = [
    "FEATURES_FORMAT",
    "FEATURES_VERSION",
    "FeatureKey",
    "SplitFeatures",
    "extract_features",
    "load_or_extract_features",
    "read_feature_key",
]

FEATURES_FORMAT = "sie.eval.features"
FEATURES_VERSION = 1

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

    def filename(self) -> str:
        safe_split = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.split)
        return f"{safe_split}-{self.resolution}px-{self.checkpoint_hash[:16]}-{self.manifest_hash[:16]}.safetensors"

    def metadata(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

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
) -> tuple[Tensor, Tensor | None]:
    """Representations (N, V, D) and, if ``embed`` is given, ``embed(h)`` (N, V, E) of every view of a split.

    ``backbone`` runs in eval mode (it is switched to it); ``source`` is a :class:`sie.data.ViewSource`
    read with ``sie.data.iterate_all_views`` (object-major, resized to ``resolution``, normalised).
    Both outputs are float32 on the CPU.
    """
    from sie.data.loader import iterate_all_views

    num_objects, views = source.num_objects, source.views_per_object
    backbone.eval()
    reps: Tensor | None = None
    embs: Tensor | None = None
    filled = torch.zeros(num_objects, views, dtype=torch.bool)
    for images, objects, view_idx in iterate_all_views(source, batch_size=batch_size, resolution=resolution):
        h = backbone(images.to(device, non_blocking=True)).float()
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


def _remove_stale(cache_dir: Path, key: FeatureKey) -> None:
    """Delete cache files of this split and dataset left by another checkpoint (it was overwritten)."""
    for other in cache_dir.glob("*.safetensors"):
        if other.name == key.filename():
            continue
        try:
            meta = read_feature_key(other)
        except Exception:  # an unreadable file is not ours to judge; leave it
            continue
        if (
            meta.get("format") == FEATURES_FORMAT
            and meta.get("split") == key.split
            and meta.get("manifest_hash") == key.manifest_hash
            and meta.get("resolution") == str(key.resolution)
            and meta.get("checkpoint_hash") != key.checkpoint_hash
        ):
            _log.info("removing %s: features of a checkpoint that no longer exists", other)
            other.unlink()


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

    ``refuse=True`` turns a mismatching cache file into a UsageError listing the differences
    (instead of recomputing). A cache without embeddings when they are needed is recomputed.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / key.filename()
    labels = torch.as_tensor(np.asarray(source.labels), dtype=torch.int64)
    latents = torch.as_tensor(np.asarray(source.latents), dtype=torch.float64)
    if path.is_file():
        meta = read_feature_key(path)
        diffs = key.differences(meta)
        if diffs and refuse:
            raise UsageError(
                f"{path}: cached features do not match this checkpoint/dataset: " + "; ".join(diffs)
            )
        with safe_open(str(path), framework="pt") as handle:
            names = set(handle.keys())
            if not diffs and (not with_embeddings or "embeddings" in names):
                reps = handle.get_tensor("representations")
                embs = handle.get_tensor("embeddings") if with_embeddings else None
                _log.info("features of %s [%s] read from %s", key.split, key.checkpoint_hash, path)
                return SplitFeatures(key, reps, embs, labels, latents, path)
        _log.info("recomputing %s: %s", path, "; ".join(diffs) or "embeddings missing")
    start = time.perf_counter()
    method.eval()
    reps, embs = extract_features(
        method.backbone,
        source,
        resolution=key.resolution,
        batch_size=batch_size,
        device=device,
        embed=method.embed_equivariant if with_embeddings else None,
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
    _remove_stale(cache_dir, key)
    return SplitFeatures(key, reps, embs, labels, latents, path, seconds)
