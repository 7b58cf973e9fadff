"""The 3DIEBench layout on disk: ``ROOT/SYNSET/OBJ/image_{v}.jpg`` and ``latent_{v}.npy`` per view.

Opening a split reads the split files and scans every object directory (names and sizes only, see
:mod:`sie.data.scan`): missing files, a wrong number of views and wrong-length latents stop the
run before training starts, naming each file (or, with ``skip_bad``, exclude those objects and
report them). With ``skip_bad`` the JPEG SOI/EOI markers are checked too, which catches truncated
files. A JPEG that is corrupt in the middle is only found when it is decoded: it then raises a
:class:`UsageError` naming the file; ``sie data check ROOT`` decodes everything up front.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sie.data import problems as P
from sie.data.problems import BadFileError, Problem, format_problems, summarize_problems
from sie.data.scan import scan_split
from sie.data.source import ViewSource
from sie.data.splits import SplitSpec, class_names_of, read_split
from sie.errors import UsageError
from sie.log import get_logger

__all__ = [
    "IDENTITY_VERSION",
    "RawSource",
    "check_image_size",
    "dataset_hash",
    "decode_image",
    "decode_image_and_mode",
    "load_latent",
    "read_latent_array",
    "render_identity",
]

_log = get_logger(__name__)
_SHOWN_PROBLEMS = 10


def decode_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file (PIL, like the reference). UsageError if unreadable."""
    return decode_image_and_mode(path)[0]


def decode_image_and_mode(path: Path) -> tuple[np.ndarray, str]:
    """:func:`decode_image`, and the file's PIL mode (``RGB``; ``L`` for a grayscale JPEG)."""
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB")), img.mode  # a writable copy (torch.from_numpy needs one)
    except FileNotFoundError:
        raise BadFileError(Problem(P.MISSING_IMAGE, path, "expected a JPEG file")) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadFileError(Problem(P.CORRUPT_IMAGE, path, f"{exc}; expected a readable RGB JPEG")) from None


def load_latent(path: Path, latent_size: int) -> np.ndarray:
    """(L,) float64 latent of one view. UsageError if missing, unreadable or of the wrong length."""
    latent: np.ndarray = read_latent_array(path, latent_size).astype(np.float64, copy=False)
    return latent


def read_latent_array(path: Path, latent_size: int) -> np.ndarray:
    """(L,) latent of one view as stored (any float dtype). UsageError if missing, unreadable or of the wrong length."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        detail = f"expected a .npy file of {latent_size} float64"
        raise BadFileError(Problem(P.MISSING_LATENT, path, detail)) from None
    except (OSError, ValueError) as exc:
        detail = f"unreadable ({exc}); expected ({latent_size},) float64"
        raise BadFileError(Problem(P.BAD_LATENT, path, detail)) from None
    if arr.shape != (latent_size,) or arr.dtype.kind != "f":
        detail = f"got shape {arr.shape} {arr.dtype}; expected ({latent_size},) float64"
        raise BadFileError(Problem(P.BAD_LATENT, path, detail))
    latent: np.ndarray = arr
    return latent


def check_image_size(path: Path, pixels: np.ndarray, size: tuple[int, int]) -> None:
    """BadFileError unless ``pixels`` (H, W, 3) has the dataset's image ``size`` (H, W)."""
    if pixels.shape != (*size, 3):
        detail = f"{pixels.shape[1]}x{pixels.shape[0]} px; expected {size[1]}x{size[0]} like the others"
        raise BadFileError(Problem(P.IMAGE_SIZE, path, detail))


RENDER_MANIFEST = "dataset.json"
"""Written by ``sie render`` (:mod:`sie.render.manifest`); optional for readers."""

IDENTITY_VERSION = 2
"""Version of the definition of :func:`dataset_hash` (1: split files, V, L and exclusions only)."""


def render_identity(root: Path) -> str | None:
    """What ``ROOT/dataset.json`` says decides the pixels: its ``identity`` (a hash of every content
    render setting and the planned objects), or the file's sha256 when it has none or is unreadable;
    None without the file (a dataset not written by ``sie render``, such as 3DIEBench itself)."""
    path = root / RENDER_MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"{path}: unreadable ({exc}); it is part of the dataset's identity") from None
    try:
        identity = json.loads(raw).get("identity")
    except (ValueError, AttributeError):
        identity = None
    if isinstance(identity, str) and identity:
        return f"identity {identity}"
    return f"sha256 {hashlib.sha256(raw).hexdigest()}"


def dataset_hash(
    files: Sequence[Path],
    views: int,
    latent_size: int,
    excluded: Sequence[str],
    *,
    image_size: tuple[int, int],
    class_names: Sequence[str],
    render: str | None,
    first_image_bytes: Sequence[int],
) -> str:
    """Identifier of a split of a 3DIEBench-layout dataset: what decides its pixels and targets, cheaply.

    It covers the bytes of the split files (which objects, their order and labels), V, L, the image
    size, the class list, the excluded object ids, the render settings from ``dataset.json`` (see
    :func:`render_identity`; absent for 3DIEBench) and the byte size of every kept object's first view
    (``first_image_bytes``, from the directory scan: one ``stat`` per object, no image is read). Another
    render of the same objects (other field of view, lighting, seed, resolution) changes the settings
    and the JPEG sizes; a copy or a move of the directory changes nothing. Not covered: an in-place
    edit that leaves the split files, ``dataset.json`` and every first view's size as they were.
    """
    digest = hashlib.sha256()
    digest.update(f"sie dataset identity {IDENTITY_VERSION}\n".encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    details = {
        "views": views,
        "latent_size": latent_size,
        "excluded": sorted(excluded),
        "image_size": list(image_size),
        "class_names": list(class_names),
        "render": render,
        "first_image_bytes": hashlib.sha256(np.asarray(first_image_bytes, dtype="<i8").tobytes()).hexdigest(),
    }
    digest.update(json.dumps(details, sort_keys=True).encode())
    return digest.hexdigest()[:32]


class RawSource(ViewSource):
    """A split of a 3DIEBench-layout directory; use :meth:`open` (or :func:`sie.data.open_split`)."""

    def __init__(
        self,
        root: Path,
        spec: SplitSpec,
        class_names: list[str],
        keep: np.ndarray,
        views_per_object: int,
        latent_size: int,
        image_size: tuple[int, int],
        excluded: list[Problem],
        first_image_bytes: Sequence[int] = (),
    ) -> None:
        self.root = root
        self.split = spec.name
        self.object_ids = [spec.object_ids[i] for i in keep]
        class_of = {name: i for i, name in enumerate(class_names)}
        if spec.labels is not None:
            self.labels = spec.labels[keep].astype(np.int64)
        else:
            self.labels = np.array([class_of[e.split("/")[0]] for e in self.object_ids], dtype=np.int64)
        self.class_names = class_names
        self.views_per_object = views_per_object
        self.latent_size = latent_size
        self.image_size = image_size
        self.excluded = excluded
        self.excluded_ids = sorted(
            {spec.object_ids[p.object_index] for p in excluded if p.object_index is not None}
        )
        self.split_files = spec.files
        self.render_identity = render_identity(root)
        self.first_image_bytes = [int(first_image_bytes[i]) for i in keep] if len(first_image_bytes) else []
        self.manifest_hash = self.identity(self.excluded_ids)
        self._latents: np.ndarray | None = None

    @classmethod
    def open(
        cls, root: Path, split: str = "train", *, skip_bad: bool = False, workers: int | None = None
    ) -> RawSource:
        """Read the split files and scan the objects; fail (or exclude, with ``skip_bad``) on problems."""
        if not root.is_dir():
            raise UsageError(
                f"{root}: no such dataset directory; expected a 3DIEBench layout or a packed store"
            )
        spec, split_problems = read_split(root, split)
        if spec is None:
            raise UsageError(f"{split_problems[0]}")
        class_names = class_names_of(root, spec)
        scan = scan_split(root, spec, class_names, check_markers=skip_bad, workers=workers)
        bad = sorted({p.object_index for p in scan.problems if p.object_index is not None})
        if scan.problems and not skip_bad:
            raise UsageError(
                f"{summarize_problems(scan.problems)} in split '{spec.name}' of {root}:\n"
                f"{format_problems(scan.problems, _SHOWN_PROBLEMS)}\n"
                f"Run `sie data check {root}` for the full list, or pass --skip-bad (data.skip_bad=true) "
                "to exclude these objects."
            )
        keep = np.setdiff1d(np.arange(len(spec.object_ids)), np.array(bad, dtype=np.int64))
        if len(keep) == 0:
            raise UsageError(
                f"{root}: split '{spec.name}' has no usable object ({summarize_problems(scan.problems)})"
            )
        if bad:
            _log.warning(
                "skip-bad: excluded %d of %d objects of split '%s' (%s); `sie data check %s` lists them",
                len(bad),
                len(spec.object_ids),
                spec.name,
                summarize_problems(scan.problems),
                root,
            )
        if scan.image_size is None:
            raise UsageError(f"{root}: no readable image in split '{spec.name}'")
        return cls(
            root,
            spec,
            class_names,
            keep,
            scan.views_per_object,
            scan.latent_size,
            scan.image_size,
            scan.problems,
            scan.first_image_bytes,
        )

    def identity(self, excluded_ids: Sequence[str]) -> str:
        """:func:`dataset_hash` of this split with ``excluded_ids`` left out (``sie pack`` adds the
        objects it finds broken while decoding); ``manifest_hash`` is ``identity(self.excluded_ids)``."""
        excluded = set(excluded_ids)
        sizes = [
            b for oid, b in zip(self.object_ids, self.first_image_bytes, strict=False) if oid not in excluded
        ]
        return dataset_hash(
            self.split_files,
            self.views_per_object,
            self.latent_size,
            sorted(excluded),
            image_size=self.image_size,
            class_names=self.class_names,
            render=self.render_identity,
            first_image_bytes=sizes,
        )

    def _object_dir(self, obj: int) -> Path:
        return self.root / self.object_ids[obj]

    def read_views(self, obj: int, views: Sequence[int]) -> Tensor:
        obj_dir = self._object_dir(obj)
        out = np.empty((len(views), *self.image_size, 3), dtype=np.uint8)
        for k, v in enumerate(views):
            path = obj_dir / f"image_{v}.jpg"
            pixels = decode_image(path)
            check_image_size(path, pixels, self.image_size)
            out[k] = pixels
        # (k, 3, H, W) with channels-last strides: no copy, and the fastest layout for the uint8 resize.
        return torch.from_numpy(out).permute(0, 3, 1, 2)

    def read_latents(self, obj: int, views: Sequence[int]) -> np.ndarray:
        if self._latents is not None:
            return self._latents[obj, list(views)]
        obj_dir = self._object_dir(obj)
        return np.stack([load_latent(obj_dir / f"latent_{v}.npy", self.latent_size) for v in views])

    @property
    def latents(self) -> np.ndarray:
        """(N, V, L) float64; loaded from the N x V files on first access (threads), then cached."""
        if self._latents is None:
            views = range(self.views_per_object)
            with ThreadPoolExecutor(max_workers=16) as pool:
                rows = list(pool.map(lambda i: self.read_latents(i, views), range(self.num_objects)))
            self._latents = np.stack(rows) if rows else np.zeros((0, len(views), self.latent_size))
        return self._latents
