"""A split of a dataset, whatever its storage: the :class:`ViewSource` interface and :func:`open_split`.

Two implementations: :class:`sie.data.raw.RawSource` reads the 3DIEBench layout (JPEG + .npy per
view) and :class:`sie.data.packed.PackedSource` reads a store written by ``sie pack`` (uint8
memory-mapped arrays). Loaders, feature extraction and evaluation only use this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from sie.data.problems import Problem

__all__ = ["ViewSource", "open_split"]


class ViewSource(ABC):
    """The objects of one split and random access to their views.

    Attributes:
        root: the dataset directory or packed store.
        split: the split name (``train``, ``val``, or a list file's stem).
        object_ids: ``'SYNSET/OBJ'`` per object, in split order (N entries).
        labels: (N,) int64 class indices.
        class_names: class names indexed by label (sorted synsets).
        views_per_object: V, read from disk.
        latent_size: L, 7 (or 10 for -T datasets).
        image_size: (H, W) of the stored images (``read_views`` returns this size).
        manifest_hash: the split's identity: a hash of what decides its pixels and targets (for run
            records, the resume check and the feature cache). A raw split: :func:`sie.data.raw.dataset_hash`
            (split files, render settings, first-view sizes, ...); a packed store:
            :func:`sie.data.packed.store_identity` (resolution and every file's sha256). Cheap to compute.
        excluded: problems of the objects left out by ``skip_bad`` (empty otherwise).
    """

    root: Path
    split: str
    object_ids: list[str]
    labels: np.ndarray
    class_names: list[str]
    views_per_object: int
    latent_size: int
    image_size: tuple[int, int]
    manifest_hash: str
    excluded: list[Problem]
    memory_mapped: bool = False  # True when read_views is a memory copy (no decoding): loaders use threads

    @property
    def num_objects(self) -> int:
        return len(self.object_ids)

    def __len__(self) -> int:
        return self.num_objects

    @property
    @abstractmethod
    def latents(self) -> np.ndarray:
        """(N, V, L) float64 latents of every view of every object."""

    @abstractmethod
    def read_views(self, obj: int, views: Sequence[int]) -> Tensor:
        """uint8 (len(views), 3, H, W) images of object ``obj`` at the stored resolution."""

    def read_latents(self, obj: int, views: Sequence[int]) -> np.ndarray:
        """(len(views), L) float64 latents of the given views of object ``obj``."""
        return np.asarray(self.latents[obj, list(views)])

    def describe(self) -> str:
        """One line: what this split holds."""
        h, w = self.image_size
        return (
            f"{self.root} [{self.split}]: {self.num_objects} objects, {len(self.class_names)} classes, "
            f"{self.views_per_object} views of {h}x{w} px, {self.latent_size} latents"
        )


def open_split(
    root: str | Path, split: str = "train", *, skip_bad: bool = False, workers: int | None = None
) -> ViewSource:
    """Open one split of a raw 3DIEBench-layout directory or of a packed store (detected automatically).

    Args:
        root: the dataset directory (``ROOT/SYNSET/OBJ/image_{v}.jpg`` + split files) or a packed store.
        split: ``train`` | ``val`` | any NAME with ``NAME_images.npy`` | a .txt/.npy list of SYNSET/OBJ ids.
        skip_bad: exclude objects with problems (reported in ``.excluded`` and logged) instead of failing.
        workers: threads for the raw layout's directory scan (default: 4 per core, at most 32).

    Raises:
        UsageError: naming the file and what was expected, for a missing/inconsistent split or any
            broken object (unless ``skip_bad``), or a stale/truncated packed store.
    """
    from sie.data.packed import PackedSource, is_packed_store
    from sie.data.raw import RawSource

    root = Path(root)
    if is_packed_store(root):
        return PackedSource.open(root, split, skip_bad=skip_bad)
    return RawSource.open(root, split, skip_bad=skip_bad, workers=workers)
