"""``sie report RUN [RUN ...] --out DIR``: one comparison table and figures, as Markdown and HTML.

Reads each run's ``eval/results.json`` (required), ``eval/figures.npz`` and ``metrics.jsonl``
(optional) and writes ``DIR/report.md``, ``DIR/report.html`` (self-contained: the PNGs are embedded as
base64, so it opens offline and can be mailed) and ``DIR/figures/*.png``.

The report opens with a short verdict per run (:func:`verdict`): whether the classes, the rotations
and the predictor beat their trivial levels by stated margins, and which documented deviations from
the reference the run's configuration turns on.

The main table follows the paper's layout: one row per run (method), columns top-1 accuracy per
representation part, rotation R² per part, colour R² (full representation; and of the invariant part,
where lower is better: an invariant part should not encode colour), and for methods with a predictor
MRR, H@1, H@5 (val, val) and PRE (val, all), and the effective rank (RankMe) of the full
representation. A value is in bold only where it beats its chance level in the column's direction and
is the best such value of the column (see :func:`main_table`); a last row gives the chance levels.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sie.config import PAPER, config_to_dict
from sie.errors import UsageError
from sie.eval import figures, metrics
from sie.eval.figure_data import load_figure_data, steering_sweeps
from sie.eval.protocol import DO_NOTHING_PRE_NOTE
from sie.log import get_logger

__all__ = [
    "DEVIATION_KEYS",
    "MAIN_COLUMNS",
    "PRE_MARGIN",
    "R2_MARGIN",
    "TOP1_MARGIN",
    "RunResults",
    "deviations",
    "load_run",
    "main_table",
    "online_rotation_floor",
    "verdict",
    "write_report",
]

_log = get_logger(__name__)


@dataclass(frozen=True)
class Column:
    """A column of the main table: which summary entry it shows and how."""

    title: str
    metric: str
    task: str
    part: str
    split: str
    percent: bool = False
    invariance: bool = False
    """The part should NOT encode the target: lower is better, and the chance level (an input-blind
    probe) is the ideal rather than a bar to beat; see :func:`_bold_cells` for its bold rule."""

    def higher_is_better(self, summary: dict[str, Any]) -> bool:
        return False if self.invariance else bool(summary.get("higher_is_better", True))


MAIN_COLUMNS: tuple[Column, ...] = (
    Column("Top-1 inv (%)", "top1", "classification", "inv", "val", True),
    Column("Top-1 equi (%)", "top1", "classification", "equi", "val", True),
    Column("Top-1 full (%)", "top1", "classification", "full", "val", True),
    Column("Rot. R² inv", "r2", "rotation", "inv", "val"),
    Column("Rot. R² equi", "r2", "rotation", "equi", "val"),
    Column("Rot. R² full", "r2", "rotation", "full", "val"),
    Column("Colour R² full", "r2", "colour", "full", "val"),
    Column("Colour R² inv ↓", "r2", "colour", "inv", "val", invariance=True),
    Column("MRR", "MRR", "retrieval", "embedding", "val-val"),
    Column("H@1", "H@1", "retrieval", "embedding", "val-val"),
    Column("H@5", "H@5", "retrieval", "embedding", "val-val"),
    Column("PRE ↓", "PRE", "retrieval", "embedding", "val-all"),
    Column("RankMe full", "rankme", "rank", "full", "val"),
)


TOP1_MARGIN = 0.05
"""Top-1 must be at least 5 points above its chance level to count as learned."""
R2_MARGIN = 0.05
"""Rotation R² must be at least 0.05 above the constant-predictor floor to count as learned."""
PRE_MARGIN = 0.02
"""PRE must be at least 0.02 below the do-nothing predictor's to count as better than doing nothing."""

DEVIATION_KEYS: tuple[str, ...] = (
    "model.hypernetwork_init_gain",
    "data.canonical_quaternion",
    "model.cov_denominator",
    "model.equi_factor_everywhere",
)
"""Settings whose help text describes a deviation from the reference's behaviour; the verdict lists
those whose value differs from the ``paper`` preset (which is the reference for each of them)."""


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
        return f"{self.results.get('method', '?')} ({self.name})"

    def summary(self, column: Column) -> dict[str, Any] | None:
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


# ---- tables -------------------------------------------------------------------------------------------


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    caption: str = ""


def _format(value: float, std: float, n: int, percent: bool) -> str:
    scale, digits = (100.0, 1) if percent else (1.0, 3)
    text = f"{value * scale:.{digits}f}"
    if n > 1:
        text += f" ± {std * scale:.{digits}f}"
    return text


def _beats(value: float, chance: float, higher_is_better: bool, margin: float = 0.0) -> bool:
    """Whether ``value`` is better than ``chance`` by at least ``margin`` in the metric's direction."""
    tolerance = 1e-9  # a value exactly at the margin counts, whatever the float rounding
    if higher_is_better:
        return value > chance and value >= chance + margin - tolerance
    return value < chance and value <= chance - margin + tolerance


def _margin(metric: str) -> float:
    """How far beyond its chance level a value must be to count as beating it (table bold and verdict)."""
    if metric.startswith("top"):
        return TOP1_MARGIN
    if metric == "r2":
        return R2_MARGIN
    if metric in ("PRE", "MRR") or metric.startswith("H@"):
        return PRE_MARGIN
    return 0.0


def _bold_cells(runs: Sequence[RunResults], col: Column) -> set[int]:
    """Indices of the runs whose value is bold in ``col``.

    Only when at least two runs have a value (bold marks the best of a comparison). A value is
    eligible where it beats its own chance level in the column's direction (higher, or lower for PRE)
    by the verdict's margin (:func:`_margin`: 5 points of top-k, 0.05 of R², 0.02 of PRE, MRR and H@k),
    so that a value the verdict calls "at chance" is never bold; columns without a chance level
    (RankMe) get no bold. In an invariance column (colour R² of the invariant part, lower is better)
    the chance level is the ideal, so eligibility is instead that the same part beats chance on top-1
    (a part that learned the classes while staying blind to colour; an untrained part is blind too).
    Among eligible values the best in the column's direction is bold (ties: all of them).
    """
    entries = [(i, s) for i, r in enumerate(runs) if (s := r.summary(col)) is not None]
    if len(entries) < 2:
        return set()
    eligible: list[tuple[int, float]] = []
    for i, s in entries:
        if col.invariance:
            top1 = runs[i].entry("top1", "classification", col.part, col.split)
            ok = (
                top1 is not None
                and top1["chance"] is not None
                and _beats(top1["mean"], top1["chance"], True, TOP1_MARGIN)
            )
        else:
            margin = _margin(col.metric)
            ok = s["chance"] is not None and _beats(s["mean"], s["chance"], col.higher_is_better(s), margin)
        if ok:
            eligible.append((i, s["mean"]))
    if not eligible:
        return set()
    higher = col.higher_is_better(entries[0][1])
    best = (max if higher else min)(v for _, v in eligible)
    return {i for i, v in eligible if v == best}


def main_table(runs: Sequence[RunResults]) -> Table:
    """The paper-layout table: runs as rows, honest bold (see :func:`_bold_cells`), chance row last."""
    columns = [c for c in MAIN_COLUMNS if any(r.summary(c) for r in runs)]
    header = ["Method", *[c.title for c in columns]]
    rows: list[list[str]] = []
    bold: set[tuple[int, int]] = set()
    for j, col in enumerate(columns):
        bold |= {(i, j + 1) for i in _bold_cells(runs, col)}
    for r in runs:
        row = [r.label]
        for col in columns:
            s = r.summary(col)
            if s is not None:
                row.append(_format(s["mean"], s["std"], s["n"], col.percent))
            elif col.task == "retrieval" and not r.results.get("has_predictor", True):
                row.append("n/a")
            else:
                row.append("–")
        rows.append(row)
    chance_row = ["chance level"]
    for col in columns:
        chances = [s["chance"] for r in runs if (s := r.summary(col)) is not None and s["chance"] is not None]
        chance_row.append(_format(chances[0], 0.0, 1, col.percent) if chances else "–")
    rows.append(chance_row)
    caption = (
        "Val split. Top-1: linear probe; R²: pooled-mean R² of an MLP probe on view pairs (colour R² inv: "
        "lower is better, the invariant part should not encode colour); MRR/H@k: rank of the true view among "
        "the object's views (val, val), H@k only for k below the views per object; PRE: rotation error of the "
        "nearest neighbour of the predictor's output over all views (val, all), lower is better, chance = the "
        "do-nothing predictor (it retrieves the start view). RankMe: effective rank of the val representations "
        "(no chance level; near 1 = dimensional collapse). n/a: the method has no predictor. Bold: the best "
        "value of a column among those that beat their chance level (colour R² inv: the lowest among runs "
        "whose invariant part beats chance on top-1). Mean ± std over probe seeds where several were run."
    )
    return Table(header, rows, bold, caption)


def detail_table(run: RunResults) -> Table:
    """Every summary entry of one run with its chance level."""
    rows = []
    for s in sorted(
        run.results.get("summary", []), key=lambda s: (s["task"], s["metric"], s["part"], s["split"])
    ):
        percent = s["metric"].startswith("top")
        chance = "–" if s["chance"] is None else _format(s["chance"], 0.0, 1, percent)
        rows.append(
            [s["task"], s["metric"] + ("" if s["higher_is_better"] else " ↓"), s["part"], s["split"],
             _format(s["mean"], s["std"], s["n"], percent), str(s["n"]), chance]
        )  # fmt: skip
    return Table(["task", "metric", "part", "split", "value", "n", "chance"], rows)


# ---- verdict --------------------------------------------------------------------------------------------


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def deviations(run_config: dict[str, Any] | None, *, has_predictor: bool = True) -> list[str]:
    """``key = value (paper preset: value)`` for each of :data:`DEVIATION_KEYS` set away from the paper preset.

    ``model.hypernetwork_init_gain`` is left out where it does nothing: a method without a predictor,
    or an MLP predictor (``model.predictor_type``).
    """
    if not run_config:
        return []
    paper = config_to_dict(PAPER)
    model = run_config.get("model", {})
    hypernetwork = has_predictor and model.get("predictor_type", "hypernetwork") == "hypernetwork"
    out = []
    for key in DEVIATION_KEYS:
        if key == "model.hypernetwork_init_gain" and not hypernetwork:
            continue
        try:
            value = _lookup(run_config, key)
        except KeyError:
            continue
        reference = _lookup(paper, key)
        if value != reference:
            out.append(f"{key} = {value} (paper preset: {reference})")
    return out


def _status(value: float, chance: float, higher_is_better: bool, margin: float) -> str:
    if _beats(value, chance, higher_is_better, margin):
        return "above"
    if _beats(chance, value, higher_is_better, margin):
        return "below"
    return "at"


def _first_entry(
    run: RunResults, metric: str, task: str, parts: Sequence[str], split: str
) -> tuple[str, dict[str, Any]] | None:
    for part in parts:
        s = run.entry(metric, task, part, split)
        if s is not None and s.get("chance") is not None:
            return part, s
    return None


_PART_NAMES = {"inv": "invariant-part", "equi": "equivariant-part", "full": "full-representation"}


def verdict(run: RunResults) -> str:
    """Two to four plain sentences on one run, computed from its summary with stated margins.

    Classes: top-1 of the invariant part (else the full representation) against the majority-class
    level; "learned" only at least :data:`TOP1_MARGIN` above it. Rotation: rotation R² of the
    equivariant part (else full) against the constant-predictor floor, :data:`R2_MARGIN`. Predictor:
    PRE (val, all) against the do-nothing predictor, :data:`PRE_MARGIN` below it. Anything within the
    margin is "at chance"; values on the wrong side are said to be worse. Deviations from the
    reference that the run's configuration turns on (:func:`deviations`) end the paragraph.
    """
    sentences: list[str] = []
    cls = _first_entry(run, "top1", "classification", ("inv", "full", "equi"), "val")
    if cls is not None:
        part, s = cls
        status = _status(s["mean"], s["chance"], True, TOP1_MARGIN)
        outcome = {"above": "classes learned", "at": "at chance, classes not learned",
                   "below": "below chance"}[status]  # fmt: skip
        sentences.append(
            f"{_PART_NAMES.get(part, part)} top-1 {100 * s['mean']:.1f}% vs chance {100 * s['chance']:.1f}%: {outcome}"
        )
    rot = _first_entry(run, "r2", "rotation", ("equi", "full", "inv"), "val")
    if rot is not None:
        part, s = rot
        status = _status(s["mean"], s["chance"], True, R2_MARGIN)
        outcome = {"above": "rotation learned", "at": "at the floor, rotation not learned",
                   "below": "below the floor"}[status]  # fmt: skip
        sentences.append(
            f"{_PART_NAMES.get(part, part)} rotation R² {s['mean']:.3f} vs constant-predictor floor "
            f"{s['chance']:.3f}: {outcome}"
        )
    pre = run.entry("PRE", "retrieval", "embedding", "val-all")
    if pre is not None and pre.get("chance") is not None:
        status = _status(pre["mean"], pre["chance"], False, PRE_MARGIN)
        outcome = {"above": "better than doing nothing", "at": "no better than doing nothing",
                   "below": "worse than doing nothing"}[status]  # fmt: skip
        sentences.append(
            f"predictor PRE {pre['mean']:.3f} vs {pre['chance']:.3f} for the do-nothing predictor: {outcome}"
        )
    elif not run.results.get("has_predictor", True):
        sentences.append("no predictor, so no PRE")
    text = (
        f"{run.label}: "
        + ("; ".join(sentences) if sentences else "no top-1, rotation R² or PRE results")
        + "."
    )
    devs = deviations(
        run.results.get("run_config"), has_predictor=bool(run.results.get("has_predictor", True))
    )
    if devs:
        text += " Documented deviations from the reference in its configuration: " + ", ".join(devs) + "."
    return text


_THRESHOLDS = (
    f"Learned / better than doing nothing means: top-1 at least {100 * TOP1_MARGIN:.0f} points above the "
    f"majority-class level, rotation R² at least {R2_MARGIN} above the constant-predictor floor, PRE at least "
    f"{PRE_MARGIN} below the do-nothing predictor's (val, all); within those margins a value is at chance."
)


# ---- online-probe floor -----------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _simulated_floor(canonical: bool) -> float:
    return metrics.simulate_rotation_r2_floor(canonical=canonical)


def online_rotation_floor(run: RunResults) -> tuple[str, float] | None:
    """The constant-predictor floor of the online rotation R² (``probe/rot_r2_*`` in metrics.jsonl).

    The online probe regresses the training transformation's quaternion, the target of the offline
    rotation probe unless the run used ``data.canonical_quaternion`` (or Euler targets: no floor
    given). So: the rotation R² chance level of results.json where it applies, else the floor
    simulated under the 3DIEBench law (``metrics.simulate_rotation_r2_floor``).
    """
    data = run.results.get("run_config", {}).get("data", {})
    if data.get("transform") == "euler":
        return None
    canonical = bool(data.get("canonical_quaternion", False))
    if not canonical:
        rot = _first_entry(run, "r2", "rotation", ("equi", "full", "inv"), "val")
        if rot is not None:
            return "constant predictor (eval chance level)", float(rot[1]["chance"])
    law = "3DIEBench law, canonical quaternions" if canonical else "3DIEBench law"
    return f"constant predictor ({law})", _simulated_floor(canonical)


def _online_references(runs: Sequence[RunResults]) -> dict[str, list[tuple[str, float]]]:
    """Reference lines for the online rotation-R² panels of the training-curve figure.

    One line per distinct floor; the runs it belongs to are named only when the runs' floors differ.
    """
    floors: dict[str, list[tuple[str, str, float]]] = {}  # key -> (run label, text, value)
    for r in runs:
        keys = {k for rec in r.metrics for k in rec if k.startswith("probe/rot_r2")}
        floor = online_rotation_floor(r) if keys else None
        if floor is not None:
            for key in keys:
                floors.setdefault(key, []).append((r.label, *floor))
    refs: dict[str, list[tuple[str, float]]] = {}
    for key, entries in sorted(floors.items()):
        groups: dict[float, list[tuple[str, str]]] = {}
        for label, text, value in entries:
            groups.setdefault(round(value, 3), []).append((label, text))
        for value, members in groups.items():
            text = f"{members[0][1]} {value:.3f}"
            if len(groups) > 1:
                text += " (" + ", ".join(label for label, _ in members) + ")"
            refs.setdefault(key, []).append((text, value))
    return refs


# ---- rendering ------------------------------------------------------------------------------------------

Block = tuple[
    str, Any
]  # ("h2"|"h3", text) | ("p", text) | ("list", [text]) | ("table", Table) | ("img", (path, alt))


def _md(blocks: list[Block], out_dir: Path) -> str:
    lines: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + content, ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "list":
            lines += [f"- {item}" for item in content] + [""]
        elif kind == "table":
            t: Table = content
            lines.append("| " + " | ".join(t.header) + " |")
            lines.append("|" + "|".join("---" for _ in t.header) + "|")
            for i, row in enumerate(t.rows):
                cells = [f"**{c}**" if (i, j) in t.bold else c for j, c in enumerate(row)]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
            if t.caption:
                lines += [f"*{t.caption}*", ""]
        elif kind == "img":
            path, alt = content
            lines += [f"![{alt}]({path.relative_to(out_dir).as_posix()})", ""]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr:last-child td { color: #777; font-style: italic; }
table.detail tr:last-child td { color: inherit; font-style: normal; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: 0.85em; padding-top: 0.4em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""


def _html(blocks: list[Block], title: str) -> str:
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           f"<style>{_CSS}</style></head><body>"]  # fmt: skip
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(content)}</p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in content) + "</ul>")
        elif kind == "table":
            t: Table = content
            css = "" if t.rows and t.rows[-1][0] == "chance level" else " class='detail'"
            out.append(f"<table{css}>")
            if t.caption:
                out.append(f"<caption>{html.escape(t.caption)}</caption>")
            out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in t.header) + "</tr>")
            for i, row in enumerate(t.rows):
                cells = [
                    f"<td><b>{html.escape(c)}</b></td>" if (i, j) in t.bold else f"<td>{html.escape(c)}</td>"
                    for j, c in enumerate(row)
                ]
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</table>")
        elif kind == "img":
            path, alt = content
            data = base64.b64encode(Path(path).read_bytes()).decode()
            out.append(f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></figure>")
    out.append("</body></html>")
    return "\n".join(out)


# ---- figures per run ------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _run_figures(run: RunResults, fig_dir: Path) -> list[Block]:
    a = run.figure_arrays
    blocks: list[Block] = []
    slug = _slug(run.name)
    curves = {
        part: (a[f"orbit/{part}/angles"], a[f"orbit/{part}/errors"])
        for part in ("inv", "equi", "full", "predictor")
        if f"orbit/{part}/angles" in a
    }
    if curves:
        labels = {
            p: ("predictor retrieval (val, val)" if p == "predictor" else f"rotation probe, {p}")
            for p in curves
        }
        references = {}
        if "orbit/reference/constant" in a and set(curves) - {"predictor"}:
            references["constant predictor (probes)"] = float(a["orbit/reference/constant"])
        if "orbit/reference/do_nothing" in a and "predictor" in curves:
            references["do-nothing predictor (retrieval)"] = float(a["orbit/reference/do_nothing"])
        fig = figures.error_along_orbits({labels[p]: c for p, c in curves.items()}, references=references)
        path = figures.save_png(fig, fig_dir / f"orbits_{slug}.png")
        reference_text = (
            " Horizontal lines: the mean error of the constant predictor (the mean training target) for the "
            "probes, and of the do-nothing predictor (it retrieves the start view) for the predictor."
            if references
            else " (This figures.npz predates the reference lines; re-run `sie eval` to draw them.)"
        )
        blocks += [
            ("h3", "Error along orbits"),
            ("p", "Rotation error (degrees) binned along each Euler angle: for the probes, of the relative rotation "
                  "between the two views; for the predictor, of the target view's rotation." + reference_text),
            ("img", (path, f"error along orbits, {run.name}")),
        ]  # fmt: skip
    if "retrieval/sources" in a:
        fig = figures.retrieval_panel(
            a["retrieval/sources"],
            a["retrieval/targets"],
            a["retrieval/retrieved"],
            a["retrieval/correct"],
            a["retrieval/captions"].tolist(),
        )
        path = figures.save_png(fig, fig_dir / f"retrieval_{slug}.png")
        blocks += [
            ("h3", "Predictor retrieval"),
            ("p", "Each query (view 0) is transformed by the predictor with the true rotation to each target view "
                  "(top row, angle from view 0); bottom row: the val image whose embedding is nearest to the "
                  "prediction (green: the exact target view)."),
            ("img", (path, f"retrieval panels, {run.name}")),
        ]  # fmt: skip
    sweeps = steering_sweeps(a)
    if sweeps:
        path = figures.save_png(figures.latent_steering(sweeps), fig_dir / f"steering_{slug}.png")
        blocks += [
            ("h3", "Latent steering"),
            ("p", "2-D PCA of normalised equivariant embeddings along each sweep: the encoded views (dots, "
                  "joined in sweep order) versus the predictor's outputs from the first view with the true "
                  "transformations (crosses); grey segments pair them. Panel titles say where each sweep "
                  "comes from (a rendered orbit, or dataset views ordered by rotation angle)."),
            ("img", (path, f"latent steering, {run.name}")),
        ]  # fmt: skip
    return blocks


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (and ``figures/``) for the runs; return both paths."""
    if not run_dirs:
        raise UsageError("sie report: give at least one run directory")
    runs = [load_run(r) for r in run_dirs]
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    blocks: list[Block] = [("h1", "sie evaluation report")]
    blocks += [("p", verdict(r)) for r in runs]
    blocks += [("p", _THRESHOLDS), ("h2", "Comparison"), ("table", main_table(runs))]
    notes = [f"{r.label}: {n}" for r in runs for n in r.results.get("notes", [])]
    if notes:
        blocks.append(("list", notes))
    curves = {r.label: r.metrics for r in runs if r.metrics}
    if curves:
        online = _online_references([r for r in runs if r.metrics])
        fig = figures.training_curves(curves, references=online)
        path = figures.save_png(fig, fig_dir / "training_curves.png")
        blocks += [("h2", "Training curves"), ("img", (path, "training curves"))]
        if online:
            blocks.append(("p", "Dashed lines in the online rotation-R² panels: the constant-predictor floor "
                                "(what predicting the mean rotation scores)."))  # fmt: skip
    preview = next((r for r in runs if "preview/images" in r.figure_arrays), None)
    if preview is not None:
        a = preview.figure_arrays
        fig = figures.dataset_preview(a["preview/images"], a["preview/labels"].tolist())
        path = figures.save_png(fig, fig_dir / "dataset_preview.png")
        blocks += [("h2", "Dataset preview"), ("p", f"Val views, from {preview.results['dataset']['root']}."),
                   ("img", (path, "dataset preview"))]  # fmt: skip
    for r in runs:
        res = r.results
        cfg = res.get("config", {})
        blocks += [
            ("h2", f"Run {r.label}"),
            ("list", [
                f"run directory: {res.get('run')}",
                f"checkpoint: {res.get('checkpoint_hash')}",
                f"dataset: {res['dataset']['root']} ("
                + ", ".join(f"{s} {d['objects']} objects x {d['views']} views, manifest {d['manifest_hash']}"
                            for s, d in res["dataset"]["splits"].items()) + ")",
                f"protocol: preset {res.get('preset') or '(run config)'}, probe epochs {cfg.get('probe_epochs')}, "
                f"seeds {cfg.get('probe_seeds')}, reference BN {cfg.get('reference_bn')}, device {res.get('device')}",
                f"evaluation wall time: {res.get('wall_time_s')} s",
            ]),
            ("table", detail_table(r)),
        ]  # fmt: skip
        blocks += _run_figures(r, fig_dir)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(_md(blocks, out_dir))
    html_path.write_text(_html(blocks, "sie evaluation report"))
    _log.info("wrote %s and %s (%d runs)", md_path, html_path, len(runs))
    return md_path, html_path
