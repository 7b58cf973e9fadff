"""One evaluated run as the report reads it: :class:`RunResults` and :func:`load_run`.

:func:`load_run` reads a run's ``eval/results.json`` (required), ``eval/figures.npz`` and
``metrics.jsonl`` (optional), and restates results files written before the honest chance levels
(the do-nothing PRE bar, no H@k with k >= views per object) so that old runs are judged like new ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sie.errors import UsageError
from sie.eval.figure_data import load_figure_data
from sie.eval.protocol import DO_NOTHING_PRE_NOTE

__all__ = ["EntryKey", "RunResults", "load_run"]


class EntryKey(Protocol):
    """What names one summary entry: a (metric, task, part, split), e.g. a column of the report's table."""

    @property
    def metric(self) -> str: ...

    @property
    def task(self) -> str: ...

    @property
    def part(self) -> str: ...

    @property
    def split(self) -> str: ...


@dataclass
class RunResults:
    """What the report reads from one run directory."""

    run_dir: Path
    results: dict[str, Any]
    figure_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.results.get("run_name") or self.run_dir.name)

    @property
    def label(self) -> str:
        """``method (run name)``, or just the method when the run directory is named after it."""
        method = str(self.results.get("method", "?"))
        return method if self.name == method else f"{method} ({self.name})"

    def summary(self, column: EntryKey) -> dict[str, Any] | None:
        return self.entry(column.metric, column.task, column.part, column.split)

    def entry(self, metric: str, task: str, part: str, split: str) -> dict[str, Any] | None:
        """The summary entry (mean, std, n, chance, higher_is_better) of one (metric, task, part, split)."""
        for s in self.results.get("summary", []):
            if (s["metric"], s["task"], s["part"], s["split"]) == (metric, task, part, split):
                return dict(s)
        return None


def _views(results: dict[str, Any], split: str) -> int | None:
    info = results.get("dataset", {}).get("splits", {}).get(split)
    return int(info["views"]) if info and "views" in info else None


def _restate_old_results(results: dict[str, Any]) -> list[str]:
    """Bring results.json files written before the honest chance levels up to date, in place.

    * PRE: its chance level was a retrieval independent of the query; the bar is the do-nothing
      predictor, ``(V - 1) / V`` times that (V views per object of the query split) in expectation.
    * H@k with k >= V: 1 for every method; dropped.

    Returns notes saying what was restated.
    """
    notes: list[str] = []
    pre_notes = {r.get("chance_note") for r in results.get("records", []) if r.get("metric") == "PRE"}
    restate_pre = bool(pre_notes) and DO_NOTHING_PRE_NOTE not in pre_notes
    kept = []
    for s in results.get("summary", []):
        query_split = s["split"].split("-")[0] if s["task"] == "retrieval" else s["split"]
        v = _views(results, query_split)
        if s["metric"].startswith("H@") and v is not None and int(s["metric"][2:]) >= v:
            continue
        if restate_pre and s["metric"] == "PRE" and s.get("chance") is not None and v is not None:
            s = {**s, "chance": s["chance"] * (v - 1) / v}
        kept.append(s)
    if len(kept) < len(results.get("summary", [])):
        notes.append("H@k rows with k >= views per object left out (every method scores 1 there)")
    if restate_pre:
        notes.append(
            "PRE chance restated: this results.json gives the level of a retrieval independent of the query; "
            "the bar is the do-nothing predictor (it retrieves the start view), (V - 1) / V of that with V views "
            "per object. Re-run `sie eval` for the exact value."
        )
    results["summary"] = kept
    return notes


def load_run(run_dir: str | Path) -> RunResults:
    """Read a run's evaluation artefacts; a run without ``eval/results.json`` is a UsageError."""
    run_dir = Path(run_dir)
    path = run_dir / "eval" / "results.json"
    if not path.is_file():
        raise UsageError(f"{run_dir}: no eval/results.json; run `sie eval {run_dir} --data ROOT` first")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if results.get("format") != "sie.eval.results":
        raise UsageError(f"{path}: not an sie results file (format {results.get('format')!r})")
    results["notes"] = [*results.get("notes", []), *_restate_old_results(results)]
    run = RunResults(run_dir, results)
    fig_path = run_dir / "eval" / "figures.npz"
    if fig_path.is_file():
        run.figure_arrays = load_figure_data(fig_path)
    metrics_path = run_dir / "metrics.jsonl"
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    run.metrics.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by an interrupted write; the rest is still useful
    return run
