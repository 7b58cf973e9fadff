"""``sie report RUN [RUN ...] --out DIR``: one comparison table and figures, as Markdown and HTML.

Reads each run's ``eval/results.json`` (required), ``eval/figures.npz`` and ``metrics.jsonl``
(optional) and writes ``DIR/report.md``, ``DIR/report.html`` (self-contained: the PNGs are embedded as
base64, so it opens offline and can be mailed) and ``DIR/figures/*.png``.

The main table follows the paper's layout: one row per run (method), columns top-1 accuracy per
representation part, rotation R² per part, colour R² (full representation), and for methods with a
predictor MRR, H@1, H@5 (val, val) and PRE (val, all), and the effective rank (RankMe) of the full
representation; the best value of each column is in bold (the
highest, or the lowest for PRE) and a last row gives the chance level of each column.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sie.errors import UsageError
from sie.eval import figures
from sie.eval.figure_data import load_figure_data, steering_sweeps
from sie.log import get_logger

__all__ = ["MAIN_COLUMNS", "RunResults", "load_run", "main_table", "write_report"]

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


MAIN_COLUMNS: tuple[Column, ...] = (
    Column("Top-1 inv (%)", "top1", "classification", "inv", "val", True),
    Column("Top-1 equi (%)", "top1", "classification", "equi", "val", True),
    Column("Top-1 full (%)", "top1", "classification", "full", "val", True),
    Column("Rot. R² inv", "r2", "rotation", "inv", "val"),
    Column("Rot. R² equi", "r2", "rotation", "equi", "val"),
    Column("Rot. R² full", "r2", "rotation", "full", "val"),
    Column("Colour R² full", "r2", "colour", "full", "val"),
    Column("MRR", "MRR", "retrieval", "embedding", "val-val"),
    Column("H@1", "H@1", "retrieval", "embedding", "val-val"),
    Column("H@5", "H@5", "retrieval", "embedding", "val-val"),
    Column("PRE ↓", "PRE", "retrieval", "embedding", "val-all"),
    Column("RankMe full", "rankme", "rank", "full", "val"),
)


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
        for s in self.results.get("summary", []):
            if (s["metric"], s["task"], s["part"], s["split"]) == (
                column.metric,
                column.task,
                column.part,
                column.split,
            ):
                return dict(s)
        return None


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


def main_table(runs: Sequence[RunResults]) -> Table:
    """The paper-layout table: runs as rows, best in bold, chance row last."""
    columns = [c for c in MAIN_COLUMNS if any(r.summary(c) for r in runs)]
    header = ["Method", *[c.title for c in columns]]
    rows: list[list[str]] = []
    bold: set[tuple[int, int]] = set()
    for j, col in enumerate(columns):
        entries = [(i, r.summary(col)) for i, r in enumerate(runs)]
        valued = [(i, s["mean"]) for i, s in entries if s is not None]
        if len(valued) > 1:
            best = (max if col.metric != "PRE" else min)(v for _, v in valued)
            bold |= {(i, j + 1) for i, v in valued if v == best}
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
        "Val split. Top-1: linear probe; R²: pooled-mean R² of an MLP probe on view pairs; MRR/H@k: rank of the "
        "true view among the object's views (val, val); PRE: rotation error of the nearest neighbour of the "
        "predictor's output over all views (val, all), lower is better. RankMe: effective rank of the val "
        "representations (no chance level; near 1 = dimensional collapse). n/a: the method has no predictor. "
        "Mean ± std over probe seeds where several were run."
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
        fig = figures.error_along_orbits({labels[p]: c for p, c in curves.items()})
        path = figures.save_png(fig, fig_dir / f"orbits_{slug}.png")
        blocks += [
            ("h3", "Error along orbits"),
            ("p", "Rotation error (degrees) binned along each Euler angle: for the probes, of the relative rotation "
                  "between the two views; for the predictor, of the target view's rotation."),
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
    blocks: list[Block] = [("h1", "sie evaluation report"), ("h2", "Comparison"), ("table", main_table(runs))]
    notes = [f"{r.label}: {n}" for r in runs for n in r.results.get("notes", [])]
    if notes:
        blocks.append(("list", notes))
    curves = {r.label: r.metrics for r in runs if r.metrics}
    if curves:
        path = figures.save_png(figures.training_curves(curves), fig_dir / "training_curves.png")
        blocks += [("h2", "Training curves"), ("img", (path, "training curves"))]
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
