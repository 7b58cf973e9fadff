"""Fast structural scan of the objects of a split: directory listings and file sizes, no decoding.

Finds, per object: a split entry with no directory, missing ``image_{v}.jpg`` / ``latent_{v}.npy``
for ``v < V``, view files beyond ``V``, latent files of the wrong length (by size, confirmed by
loading), labels that disagree with the sorted synset order and, optionally, JPEG files that do not
start with the SOI marker or lack the EOI marker near their end (truncated or not JPEG). ``V``, the
number of views per object, is given (``dataset.json``) or read from disk: per object, one past the
highest view that has both files, the most common value over the objects.
The byte size of each object's first view (``image_0.jpg``) is recorded on the way, for the
dataset's identity (:func:`sie.data.raw.dataset_hash`): one ``stat`` per object, next to the one per
latent file the scan makes anyway.

The full content check (decoding every JPEG, loading every latent) lives in :mod:`sie.data.check`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from sie.data import problems as P
from sie.data.problems import Problem
from sie.data.splits import SplitSpec

__all__ = ["ObjectListing", "ScanResult", "jpeg_markers_ok", "scan_split"]

_VIEW_FILE = re.compile(r"^(image|latent)_(\d+)\.(jpg|npy)$")
_CHUNK = 256


@dataclass
class ObjectListing:
    """What one object directory holds: view numbers of images and latents, latent file sizes."""

    exists: bool
    images: set[int] = field(default_factory=set)
    latents: dict[int, int] = field(default_factory=dict)  # view -> file size in bytes
    bad_jpegs: list[int] = field(default_factory=list)
    first_image_bytes: int = -1  # size of image_0.jpg (-1: none, or unreadable)


@dataclass
class ScanResult:
    """Outcome of :func:`scan_split`. ``problems`` are object-level (skippable) unless said otherwise."""

    views_per_object: int
    latent_size: int
    image_size: tuple[int, int] | None  # (H, W) of the first readable image header
    problems: list[Problem]
    first_image_bytes: list[int] = field(default_factory=list)  # per split entry: size of image_0.jpg, or -1


def jpeg_markers_ok(path: Path) -> bool:
    """True if the file starts with the JPEG SOI marker and has an EOI marker in its last 64 bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64))
            tail = f.read()
    except OSError:
        return False
    return head == b"\xff\xd8" and b"\xff\xd9" in tail


def _list_object(obj_dir: Path, check_markers: bool) -> ObjectListing:
    try:
        entries = list(os.scandir(obj_dir))
    except (FileNotFoundError, NotADirectoryError):
        return ObjectListing(exists=False)
    listing = ObjectListing(exists=True)
    for entry in entries:
        m = _VIEW_FILE.match(entry.name)
        if m is None:
            continue
        kind, view, ext = m.group(1), int(m.group(2)), m.group(3)
        if kind == "image" and ext == "jpg":
            listing.images.add(view)
            if view == 0:
                with contextlib.suppress(OSError):  # a dangling link: found when decoded
                    listing.first_image_bytes = entry.stat().st_size
            if check_markers and not jpeg_markers_ok(Path(entry.path)):
                listing.bad_jpegs.append(view)
        elif kind == "latent" and ext == "npy":
            listing.latents[view] = entry.stat().st_size
    return listing


def _list_all(root: Path, ids: Sequence[str], check_markers: bool, workers: int) -> list[ObjectListing]:
    chunks = [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]

    def run(chunk: Sequence[str]) -> list[ObjectListing]:
        return [_list_object(root / entry, check_markers) for entry in chunk]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [listing for part in pool.map(run, chunks) for listing in part]


def _views_per_object(listings: Sequence[ObjectListing]) -> int:
    """V as the objects show it: per object, one past its highest view with both an image and a latent
    (only images count where it has no latent at all); the most common value wins, ties the larger.

    A stray ``image_7.jpg`` beside views 0..2 (no ``latent_7.npy``) therefore still says 3, where a
    count of images would say 4 and report ``image_3`` missing from every other object; a view missing
    in the middle does not lower the estimate either.
    """
    estimates = Counter[int]()
    for li in listings:
        if not li.exists or not li.images:
            continue
        both = li.images & li.latents.keys()
        estimates[max(both) + 1 if both else len(li.images)] += 1
    return max(estimates.items(), key=lambda kv: (kv[1], kv[0]))[0] if estimates else 0


def _latent_shape(path: Path) -> tuple[tuple[int, ...], str] | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr.shape, str(arr.dtype)


def scan_split(
    root: Path,
    spec: SplitSpec,
    class_names: Sequence[str],
    *,
    check_markers: bool = False,
    workers: int | None = None,
    expected_views: int | None = None,
) -> ScanResult:
    """Scan every object of ``spec`` under ``root`` (threads; I/O bound). Returns V, L and the problems.

    ``expected_views`` is V when it is known (``dataset.json``'s ``views_per_object``); otherwise it
    is read from the objects (:func:`_views_per_object`).
    """
    workers = workers or min(32, 4 * (os.cpu_count() or 1))
    listings = _list_all(root, spec.object_ids, check_markers, workers)
    split = spec.name
    problems: list[Problem] = []
    views = expected_views if expected_views is not None else _views_per_object(listings)

    # Latent length: from the most common latent file size, confirmed by loading one such file.
    sizes = Counter(s for li in listings if li.exists for s in li.latents.values())
    ref_size = sizes.most_common(1)[0][0] if sizes else -1
    latent_size, ref_valid = 0, False
    for entry, li in zip(spec.object_ids, listings, strict=True):
        v = next((v for v, s in li.latents.items() if s == ref_size), None)
        if v is not None:
            shape = _latent_shape(root / entry / f"latent_{v}.npy")
            if shape is not None and len(shape[0]) == 1:
                latent_size = shape[0][0]
            break
    ref_valid = latent_size in (7, 10)
    if not ref_valid:
        latent_size = 7  # every latent is then reported as wrong below, against the 3DIEBench length

    synset_class = {name: i for i, name in enumerate(class_names)}
    for i, (entry, li) in enumerate(zip(spec.object_ids, listings, strict=True)):
        obj_dir = root / entry

        def report(kind: str, path: Path, detail: str, i: int = i) -> None:
            problems.append(Problem(kind, path, detail, split=split, object_index=i))

        if spec.labels is not None:
            expected = synset_class.get(entry.split("/")[0])
            if expected is not None and int(spec.labels[i]) != expected:
                report(
                    P.LABEL_MISMATCH,
                    spec.files[-1],
                    f"entry {i} ({entry}) has label {int(spec.labels[i])}; its synset is class {expected} "
                    f"in sorted order",
                )
        if not li.exists:
            report(P.MISSING_OBJECT, obj_dir, f"listed in {spec.files[0]} (entry {i}); expected a directory")
            continue
        for v in range(views):
            if v not in li.images:
                report(P.MISSING_IMAGE, obj_dir / f"image_{v}.jpg", f"expected views 0..{views - 1}")
            if v not in li.latents:
                report(P.MISSING_LATENT, obj_dir / f"latent_{v}.npy", f"expected views 0..{views - 1}")
        for v in sorted(set(li.images) | set(li.latents)):
            if v >= views:
                name = f"image_{v}.jpg" if v in li.images else f"latent_{v}.npy"
                report(P.EXTRA_VIEW, obj_dir / name, f"other objects have {views} views (0..{views - 1})")
        for v in li.bad_jpegs:
            report(
                P.CORRUPT_IMAGE, obj_dir / f"image_{v}.jpg", "not a complete JPEG (SOI/EOI markers missing)"
            )
        for v, size in sorted(li.latents.items()):
            if size == ref_size and ref_valid:
                continue
            path = obj_dir / f"latent_{v}.npy"
            shape = _latent_shape(path)
            if shape is None or shape[0] != (latent_size,) or np.dtype(shape[1]).kind != "f":
                got = "an unreadable file" if shape is None else f"shape {shape[0]} {shape[1]}"
                report(P.BAD_LATENT, path, f"got {got}; expected ({latent_size},) float64")

    image_size = None
    for entry, li in zip(spec.object_ids, listings, strict=True):
        if li.exists and 0 in li.images:
            try:
                with Image.open(root / entry / "image_0.jpg") as img:
                    image_size = (img.height, img.width)
                break
            except OSError:
                continue
    return ScanResult(views, latent_size, image_size, problems, [li.first_image_bytes for li in listings])
