"""``sie data check``: list every problem of a dataset (3DIEBench layout or packed store).

For the raw layout: a ``dataset.json`` of ``sie render`` that is not ``complete`` (a render that did
not finish), a ``train`` split without ``val`` or the reverse, and object folders that hold views but
are listed in no split file. Then per split: the split files (missing, unreadable, empty, labels and
split of different lengths, entries in two splits or twice in one), the directory scan of
:mod:`sie.data.scan` (missing objects, images and latents, extra views, labels against the synset
order, JPEG markers), then the content of every file, in parallel processes: each JPEG is decoded
(corrupt or truncated data, image size, grayscale or other non-RGB modes) and each latent loaded
(length, float64, finite values inside the sampling ranges: ``dataset.json``'s render config when
there is one, else the factors' domains). For a packed store: the manifest, every file's size and
sha256, and staleness against its source (:func:`sie.data.packed.verify_store`).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sie.data import problems as P
from sie.data.packed import is_packed_store, verify_store
from sie.data.problems import BadFileError, Problem
from sie.data.raw import RENDER_MANIFEST, check_image_size, decode_image_and_mode, read_latent_array
from sie.data.scan import scan_split
from sie.data.splits import SplitSpec, class_names_of, find_split_names, read_split
from sie.render.latents import FACTORS  # the latent file layout, named once

__all__ = ["CheckReport", "LatentBounds", "check_dataset", "latent_bounds"]

_CHUNK = 64


@dataclass
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes:
        problems: every problem, in split then file order.
        objects: number of objects checked per split.
        excluded: per split, how many objects ``--skip-bad`` would exclude.
        usable_with_skip_bad: True when every problem is object-level and each split keeps an object.
    """

    problems: list[Problem] = field(default_factory=list)
    objects: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    usable_with_skip_bad: bool = True


_DOMAIN: dict[str, tuple[float, float]] = {
    "rot": (-math.pi, math.pi),
    "floor_hue": (0.0, 1.0),
    "spot_theta": (0.0, math.pi / 2),
    "spot_phi": (0.0, 2 * math.pi),
    "spot_hue": (0.0, 1.0),
    "trans": (-math.inf, math.inf),
}
"""What each factor can mean at all (angles, hues, a spot above the floor), for datasets without a
``dataset.json``: 3DIEBench samples inside these, and so do its -T and -OOD variants."""

_TOLERANCE = 1e-9


@dataclass(frozen=True)
class LatentBounds:
    """(L,) lowest and highest allowed value of each latent entry, and where they come from."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    origin: str


def latent_bounds(latent_size: int, manifest: Mapping[str, Any] | None) -> LatentBounds:
    """Allowed latent values: the sampling ranges of ``dataset.json``'s render config, else the domains.

    ``manifest`` is the parsed ``dataset.json`` (None: 3DIEBench itself or another generator's data).
    """
    config = manifest.get("config") if manifest is not None else None
    ranges: dict[str, tuple[float, float]] = dict(_DOMAIN)
    origin = "the factors' domains"
    if isinstance(config, Mapping):
        origin = f"the render config in {RENDER_MANIFEST}"
        for key, factor in (
            ("floor_hue_range", "floor_hue"),
            ("spot_theta_range", "spot_theta"),
            ("spot_phi_range", "spot_phi"),
            ("spot_hue_range", "spot_hue"),
            ("translation_range", "trans"),
            ("rotation_range", "rot"),
        ):
            value = config.get(key)
            if isinstance(value, Sequence) and len(value) == 2:
                ranges[factor] = (float(value[0]), float(value[1]))
        ood = config.get("ood_rotation_range")
        if config.get("variant") == "OOD" and isinstance(ood, Sequence) and len(ood) == 2:
            ranges["rot"] = (-float(ood[1]), float(ood[1]))
    low, high = [], []
    for name in FACTORS[:latent_size]:
        lo, hi = ranges[name.split("_")[0] if name.startswith(("rot_", "trans_")) else name]
        low.append(lo)
        high.append(hi)
    return LatentBounds(tuple(low), tuple(high), origin)


@dataclass(frozen=True)
class _ContentTask:
    root: str
    split: str
    items: tuple[tuple[int, str], ...]  # (object index, 'SYNSET/OBJ')
    views: int
    latent_size: int
    image_size: tuple[int, int] | None
    bounds: LatentBounds


def _latent_value_problem(latent: np.ndarray, bounds: LatentBounds) -> str | None:
    """What is wrong with the values of one (L,) latent, or None."""
    for k, value in enumerate(latent.tolist()):
        name = FACTORS[k] if k < len(FACTORS) else f"entry {k}"
        if not math.isfinite(value):
            return f"{name} is {value}; expected a finite number"
        lo, hi = bounds.low[k], bounds.high[k]
        if not lo - _TOLERANCE <= value <= hi + _TOLERANCE:
            return f"{name}={value:.6g} is outside [{lo:.6g}, {hi:.6g}] ({bounds.origin})"
    return None


def _check_content(task: _ContentTask) -> tuple[int, list[Problem]]:
    """Decode every image and load every latent of a chunk of objects (runs in a worker)."""
    found = []
    for index, entry in task.items:
        obj_dir = Path(task.root) / entry

        def report(kind: str, path: Path, detail: str, index: int = index) -> None:
            found.append(Problem(kind, path, detail, split=task.split, object_index=index))

        if not obj_dir.is_dir():
            continue  # reported by the scan
        for v in range(task.views):
            image, latent = obj_dir / f"image_{v}.jpg", obj_dir / f"latent_{v}.npy"
            try:
                if image.is_file():
                    pixels, mode = decode_image_and_mode(image)
                    if mode != "RGB":
                        kind = "grayscale" if mode in ("L", "LA", "1", "I", "I;16", "F") else "not RGB"
                        report(
                            P.NOT_RGB,
                            image,
                            f"{kind} (PIL mode {mode}); expected an RGB JPEG like the others",
                        )
                    if task.image_size is not None:
                        check_image_size(image, pixels, task.image_size)
                if latent.is_file():
                    values = read_latent_array(latent, task.latent_size)
                    if values.dtype != np.float64:
                        report(
                            P.LATENT_DTYPE,
                            latent,
                            f"stored as {values.dtype}; expected float64 (3DIEBench's format)",
                        )
                    problem = _latent_value_problem(values.astype(np.float64), task.bounds)
                    if problem is not None:
                        report(P.LATENT_VALUE, latent, problem)
            except BadFileError as exc:
                p = exc.problem
                found.append(Problem(p.kind, p.path, p.detail, split=task.split, object_index=index))
    return len(task.items), found


def _read_render_manifest(root: Path) -> tuple[dict[str, Any] | None, list[Problem]]:
    """``dataset.json`` of ``sie render`` when there is one, and a problem when it says the render did
    not finish (or cannot be read)."""
    path = root / RENDER_MANIFEST
    if not path.is_file():
        return None, []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, [Problem(P.UNFINISHED, path, f"unreadable ({exc}); expected the manifest of sie render")]
    if not isinstance(data, dict):
        return None, [Problem(P.UNFINISHED, path, "not a JSON object; expected the manifest of sie render")]
    status = data.get("status")
    if status != "complete":
        detail = (
            f"status is {status!r}: the render did not finish; expected 'complete' (run the same "
            "`sie render` command again to finish it)"
        )
        return data, [Problem(P.UNFINISHED, path, detail)]
    return data, []


def _missing_partner_splits(root: Path, names: Sequence[str]) -> list[Problem]:
    """A ``train`` split without a ``val`` split, or the reverse (the layout has both)."""
    out = []
    for have, need in (("train", "val"), ("val", "train")):
        if have in names and need not in names:
            detail = f"{have}_images.npy exists but {need}_images.npy does not; expected both splits"
            out.append(Problem(P.MISSING_SPLIT, root / f"{need}_images.npy", detail, split=need))
    return out


_VIEW_FILE = re.compile(r"^(image_\d+\.jpg|latent_\d+\.npy)$")


def _unlisted_objects(root: Path, specs: Mapping[str, SplitSpec]) -> list[Problem]:
    """Folders ``ROOT/SYNSET/OBJ`` that hold view files but are in no split (e.g. a class that a
    render dropped): not an error for training, which never sees them, but a sign of a broken render."""
    listed = {entry for spec in specs.values() for entry in spec.object_ids}
    names = ", ".join(specs) or "none"
    out = []
    for class_dir in sorted(root.iterdir()):
        if not class_dir.is_dir() or class_dir.name.startswith("."):
            continue
        for obj_dir in sorted(class_dir.iterdir()):
            key = f"{class_dir.name}/{obj_dir.name}"
            if key in listed or obj_dir.name.startswith(".") or not obj_dir.is_dir():
                continue
            if any(_VIEW_FILE.match(entry.name) for entry in os.scandir(obj_dir)):
                detail = f"holds views but is in no split file ({names}); expected it listed, or removed"
                out.append(Problem(P.UNLISTED_OBJECT, obj_dir, detail))
    return out


def _duplicates(specs: dict[str, SplitSpec]) -> list[Problem]:
    out = []
    seen: dict[str, tuple[str, int]] = {}
    for name, spec in specs.items():
        for i, entry in enumerate(spec.object_ids):
            if entry in seen:
                where, j = seen[entry]
                detail = (
                    f"entry {i} ({entry}) is also entry {j} of split '{where}'; expected each object once"
                )
                out.append(Problem(P.DUPLICATE, spec.files[0], detail, split=name, object_index=i))
            else:
                seen[entry] = (name, i)
    return out


def check_dataset(
    root: str | Path,
    *,
    splits: Sequence[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CheckReport:
    """Scan a dataset and return every problem (nothing is raised for bad data)."""
    root = Path(root)
    report = CheckReport()
    if not root.is_dir():
        report.problems.append(Problem(P.MISSING_SPLIT, root, "no such directory; expected a dataset"))
        report.usable_with_skip_bad = False
        return report
    if is_packed_store(root):
        report.problems = verify_store(root)
        report.usable_with_skip_bad = not report.problems
        return report
    manifest, manifest_problems = _read_render_manifest(root)
    report.problems.extend(manifest_problems)
    found_names = find_split_names(root)
    names = list(splits) if splits else found_names or ["train"]
    missing_partner = [] if splits else _missing_partner_splits(root, found_names)
    report.problems.extend(missing_partner)
    specs: dict[str, SplitSpec] = {}
    for name in names:
        spec, split_problems = read_split(root, name)
        report.problems.extend(split_problems)
        if spec is not None and not spec.object_ids:
            split_problems = [
                Problem(P.EMPTY_SPLIT, spec.files[0], "no entries; expected '/SYNSET/OBJ/' ids")
            ]
            report.problems.extend(split_problems)
        if spec is None:
            report.usable_with_skip_bad = False
        else:
            specs[name] = spec
    report.problems.extend(_duplicates(specs))
    if not splits and not missing_partner:  # else the missing split's objects would all be listed here
        report.problems.extend(_unlisted_objects(root, specs))

    views = manifest.get("views_per_object") if manifest is not None else None
    tasks: list[_ContentTask] = []
    for name, spec in specs.items():
        scan = scan_split(
            root,
            spec,
            class_names_of(root, spec),
            check_markers=True,
            expected_views=views if isinstance(views, int) and views > 0 else None,
        )
        report.problems.extend(scan.problems)
        report.objects[name] = len(spec.object_ids)
        items = list(enumerate(spec.object_ids))
        bounds = latent_bounds(scan.latent_size, manifest)
        tasks += [
            _ContentTask(
                str(root),
                name,
                tuple(items[i : i + _CHUNK]),
                scan.views_per_object,
                scan.latent_size,
                scan.image_size,
                bounds,
            )
            for i in range(0, len(items), _CHUNK)
        ]
    workers = workers or os.cpu_count() or 1
    total = sum(len(t.items) for t in tasks)
    with tqdm(
        total=total, unit="obj", desc="sie data check", disable=not progress, dynamic_ncols=True
    ) as bar:
        if workers <= 1 or len(tasks) <= 1:
            results = (_check_content(t) for t in tasks)
            for count, found in results:
                report.problems.extend(found)
                bar.update(count)
        else:
            with multiprocessing.get_context().Pool(min(workers, len(tasks))) as pool:
                for count, found in pool.imap(_check_content, tasks):
                    report.problems.extend(found)
                    bar.update(count)

    # A file can be flagged by the scan and again by decoding (e.g. a truncated JPEG): keep the first.
    unique: dict[tuple[str, str, Path], Problem] = {}
    for p in report.problems:
        key = (p.split, p.kind, p.path)
        unique.setdefault(key, p)
    report.problems = list(unique.values())
    bad_objects: dict[str, set[int]] = defaultdict(set)
    for p in report.problems:
        if p.object_index is None:
            # an object in no split is never read: it does not stop a --skip-bad run
            report.usable_with_skip_bad &= p.kind == P.UNLISTED_OBJECT
        else:
            bad_objects[p.split].add(p.object_index)
    report.excluded = {name: len(bad_objects[name]) for name in specs}
    if any(report.excluded[n] >= report.objects.get(n, 0) for n in specs):
        report.usable_with_skip_bad = False
    return report
