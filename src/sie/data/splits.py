"""Split files of the 3DIEBench layout: which objects form a split, and their class labels.

A split is named (``train``, ``val``, or any NAME with ``ROOT/NAME_images.npy``) or given as a
file listing ``SYNSET/OBJ`` ids (``.txt``: one per line, ``#`` comments; ``.npy``: an array of
strings). Entries may carry the reference's leading/trailing slashes (``'/02691156/dc8d.../'``):
the reference strips the leading one (``root / entry[1:]``), here both are stripped.

Labels come from ``ROOT/NAME_labels.npy`` when the split has one (the reference's behaviour),
otherwise they are the index of the synset in sorted order (how 3DIEBench's labels were made).
The class list is the sorted set of synsets referenced by every standard split file in ROOT (and by
the split itself), so ``train`` and ``val`` share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sie.data import problems as P
from sie.data.problems import Problem

__all__ = ["SplitSpec", "class_names_of", "find_split_names", "read_split"]


@dataclass(frozen=True)
class SplitSpec:
    """The objects of one split, in file order.

    Attributes:
        name: the split name (``train``) or the list file's stem.
        object_ids: ``'SYNSET/OBJ'`` per object.
        labels: (N,) int64 labels from the labels file, or None when the split has none.
        files: the files the split was read from (for messages and the dataset hash).
    """

    name: str
    object_ids: list[str]
    labels: np.ndarray | None
    files: tuple[Path, ...]


def find_split_names(root: Path) -> list[str]:
    """Names of the standard splits in ``root`` (``NAME_images.npy`` files), sorted."""
    return sorted(p.name[: -len("_images.npy")] for p in root.glob("*_images.npy") if p.is_file())


def _normalise_entry(entry: str) -> str:
    return str(entry).strip().strip("/")


def _load_string_array(path: Path) -> np.ndarray:
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 1 or arr.dtype.kind not in "US":
        raise ValueError(f"expected a 1-D array of strings, got dtype {arr.dtype} and shape {arr.shape}")
    strings: np.ndarray = arr.astype(str)
    return strings


def _read_list_file(path: Path) -> list[str]:
    if path.suffix == ".npy":
        return [_normalise_entry(e) for e in _load_string_array(path)]
    lines = path.read_text().splitlines()
    return [_normalise_entry(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _bad_entries(ids: list[str], path: Path, split: str) -> list[Problem]:
    out = []
    for i, entry in enumerate(ids):
        if entry.count("/") != 1 or "" in entry.split("/") or ".." in entry.split("/"):
            out.append(
                Problem(P.BAD_SPLIT, path, f"entry {i} is {entry!r}; expected '/SYNSET/OBJ/'", split=split)
            )
    return out


def read_split(root: Path, split: str) -> tuple[SplitSpec | None, list[Problem]]:
    """Read a split; returns ``(spec, [])`` or ``(None, problems)`` for a missing/inconsistent split file."""
    images_file = root / f"{split}_images.npy"
    labels_file = root / f"{split}_labels.npy"
    if images_file.is_file():
        try:
            ids = [_normalise_entry(e) for e in _load_string_array(images_file)]
        except (OSError, ValueError) as exc:
            return None, [Problem(P.BAD_SPLIT, images_file, f"cannot read it ({exc})", split=split)]
        bad = _bad_entries(ids, images_file, split)
        if bad:
            return None, bad
        labels: np.ndarray | None = None
        files: tuple[Path, ...] = (images_file,)
        if labels_file.is_file():
            try:
                labels = np.load(labels_file, allow_pickle=False)
            except (OSError, ValueError) as exc:
                return None, [Problem(P.BAD_SPLIT, labels_file, f"cannot read it ({exc})", split=split)]
            if labels.ndim != 1 or labels.dtype.kind not in "iu":
                detail = f"expected a 1-D int64 array, got dtype {labels.dtype} and shape {labels.shape}"
                return None, [Problem(P.BAD_SPLIT, labels_file, detail, split=split)]
            if len(labels) != len(ids):
                detail = (
                    f"{len(labels)} labels but {images_file} has {len(ids)} entries; expected equal lengths"
                )
                return None, [Problem(P.LENGTH_MISMATCH, labels_file, detail, split=split)]
            labels = labels.astype(np.int64)
            files = (images_file, labels_file)
        return SplitSpec(split, ids, labels, files), []
    list_file = Path(split)
    if not list_file.is_absolute() and not list_file.is_file():
        list_file = root / split
    if list_file.is_file() and list_file.suffix in (".txt", ".npy"):
        try:
            ids = _read_list_file(list_file)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return None, [Problem(P.BAD_SPLIT, list_file, f"cannot read it ({exc})", split=split)]
        bad = _bad_entries(ids, list_file, split)
        if bad:
            return None, bad
        if not ids:
            return None, [
                Problem(P.BAD_SPLIT, list_file, "no entries; expected 'SYNSET/OBJ' ids", split=split)
            ]
        return SplitSpec(list_file.stem, ids, None, (list_file,)), []
    known = ", ".join(find_split_names(root)) or "none"
    detail = (
        f"expected {images_file.name} (+ {labels_file.name}) in {root} or a .txt/.npy list of "
        f"SYNSET/OBJ ids; splits found: {known}"
    )
    return None, [Problem(P.MISSING_SPLIT, images_file, detail, split=split)]


def class_names_of(root: Path, spec: SplitSpec) -> list[str]:
    """Sorted synsets referenced by every standard split of ``root`` and by ``spec`` itself."""
    synsets = {entry.split("/")[0] for entry in spec.object_ids}
    for name in find_split_names(root):
        try:
            entries = _load_string_array(root / f"{name}_images.npy")
        except (OSError, ValueError):
            continue  # reported when that split itself is read or checked
        synsets.update(_normalise_entry(e).split("/")[0] for e in entries)
    return sorted(synsets)
