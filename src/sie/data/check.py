"""``sie data check``: list every problem of a dataset (3DIEBench layout or packed store).

For the raw layout, per split: the split files (missing, unreadable, labels and split of different
lengths, entries in two splits or twice in one), the directory scan of :mod:`sie.data.scan`
(missing objects, images and latents, extra views, labels against the synset order, JPEG markers),
then the content of every file: each JPEG is decoded (corrupt or truncated data, image size) and
each latent loaded (length), in parallel processes. For a packed store: the manifest, every file's
size and sha256, and staleness against its source (:func:`sie.data.packed.verify_store`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from sie.data import problems as P
from sie.data.packed import is_packed_store, verify_store
from sie.data.problems import BadFileError, Problem
from sie.data.raw import check_image_size, decode_image, load_latent
from sie.data.scan import scan_split
from sie.data.splits import SplitSpec, class_names_of, find_split_names, read_split

__all__ = ["CheckReport", "check_dataset"]

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


@dataclass(frozen=True)
class _ContentTask:
    root: str
    split: str
    items: tuple[tuple[int, str], ...]  # (object index, 'SYNSET/OBJ')
    views: int
    latent_size: int
    image_size: tuple[int, int] | None


def _check_content(task: _ContentTask) -> tuple[int, list[Problem]]:
    """Decode every image and load every latent of a chunk of objects (runs in a worker)."""
    found = []
    for index, entry in task.items:
        obj_dir = Path(task.root) / entry
        if not obj_dir.is_dir():
            continue  # reported by the scan
        for v in range(task.views):
            image, latent = obj_dir / f"image_{v}.jpg", obj_dir / f"latent_{v}.npy"
            try:
                if image.is_file():
                    pixels = decode_image(image)
                    if task.image_size is not None:
                        check_image_size(image, pixels, task.image_size)
                if latent.is_file():
                    load_latent(latent, task.latent_size)
            except BadFileError as exc:
                p = exc.problem
                found.append(Problem(p.kind, p.path, p.detail, split=task.split, object_index=index))
    return len(task.items), found


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
    names = list(splits) if splits else find_split_names(root) or ["train"]
    specs: dict[str, SplitSpec] = {}
    for name in names:
        spec, split_problems = read_split(root, name)
        report.problems.extend(split_problems)
        if spec is None:
            report.usable_with_skip_bad = False
        else:
            specs[name] = spec
    report.problems.extend(_duplicates(specs))

    tasks: list[_ContentTask] = []
    for name, spec in specs.items():
        scan = scan_split(root, spec, class_names_of(root, spec), check_markers=True)
        report.problems.extend(scan.problems)
        report.objects[name] = len(spec.object_ids)
        items = list(enumerate(spec.object_ids))
        tasks += [
            _ContentTask(
                str(root),
                name,
                tuple(items[i : i + _CHUNK]),
                scan.views_per_object,
                scan.latent_size,
                scan.image_size,
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
            report.usable_with_skip_bad = False
        else:
            bad_objects[p.split].add(p.object_index)
    report.excluded = {name: len(bad_objects[name]) for name in specs}
    if any(report.excluded[n] >= report.objects.get(n, 0) for n in specs):
        report.usable_with_skip_bad = False
    return report
