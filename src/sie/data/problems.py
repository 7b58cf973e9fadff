"""Problems found in a dataset: one record per broken file, with the exact path and what was expected.

A problem attached to an object (``object_index`` set) can be skipped with ``--skip-bad``, which
excludes that object and reports it; a dataset-level problem (a missing or inconsistent split
file) cannot, and always stops the run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sie.errors import UsageError

__all__ = ["BadFileError", "Problem", "format_problems", "summarize_problems"]

# Kinds, spelled as they are printed.
MISSING_SPLIT = "missing split file"
BAD_SPLIT = "unreadable split file"
LENGTH_MISMATCH = "labels and split of different lengths"
MISSING_OBJECT = "split entry not found on disk"
DUPLICATE = "object listed twice"
LABEL_MISMATCH = "label disagrees with synset order"
MISSING_IMAGE = "missing image"
MISSING_LATENT = "missing latent"
EXTRA_VIEW = "unexpected view file"
CORRUPT_IMAGE = "corrupt image"
IMAGE_SIZE = "image of unexpected size"
BAD_LATENT = "latent of wrong length"
STORE = "packed store file"
# Found by `sie data check` only (the content and the dataset as a whole):
LATENT_VALUE = "latent value out of range"
LATENT_DTYPE = "latent not float64"
NOT_RGB = "image not RGB"
EMPTY_SPLIT = "empty split"
UNLISTED_OBJECT = "object in no split"
UNFINISHED = "unfinished render"


@dataclass(frozen=True)
class Problem:
    """One problem: ``kind`` (a fixed phrase), the file ``path`` and ``detail`` (what was expected)."""

    kind: str
    path: Path
    detail: str
    split: str = ""
    object_index: int | None = None  # index in the split's entry list; None = dataset-level

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.detail}"


def summarize_problems(problems: Sequence[Problem]) -> str:
    """One line: the total, the count per kind and the number of objects affected."""
    if not problems:
        return "no problems found"
    kinds = Counter(p.kind for p in problems)
    objects = {(p.split, p.object_index) for p in problems if p.object_index is not None}
    per_kind = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{len(problems)} problem(s) in {len(objects)} object(s): {per_kind}"


def format_problems(problems: Iterable[Problem], limit: int | None = None) -> str:
    """Problems one per line (the first ``limit`` of them, then a count of the rest)."""
    items = list(problems)
    shown = items if limit is None else items[:limit]
    lines = [str(p) for p in shown]
    if limit is not None and len(items) > limit:
        lines.append(f"... and {len(items) - limit} more")
    return "\n".join(lines)


class BadFileError(UsageError):
    """A file that cannot be used, raised while reading; carries its :class:`Problem`."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem)
        self.problem = problem
