"""``sie report RUN [RUN ...] --out DIR``: one comparison table and figures, as Markdown and HTML.

Reads each run's ``eval/results.json`` (required), ``eval/figures.npz`` and ``metrics.jsonl``
(optional) and writes ``DIR/report.md``, ``DIR/report.html`` (self-contained: the PNGs are embedded as
base64, so it opens offline and can be mailed) and ``DIR/figures/*.png``.

The report opens with a short verdict per run (:func:`sie.eval.verdict.verdict`): whether the classes,
the rotations and the predictor beat their trivial levels by stated margins, and which documented
deviations from the reference the run's configuration turns on. The runs are read by
:func:`sie.eval.run_results.load_run`.

A run whose ``checkpoint.pt`` is no longer the checkpoint its ``results.json`` evaluated (it was trained
further, or replaced, after the evaluation) is reported anyway, since a report of several runs should
not fail because of one, but marked: a warning on stderr and at the top of the report naming both
checkpoint hashes, "(stale)" after its name in the table, and both hashes in its own section
(:func:`stale_evaluation`). A run directory without ``checkpoint.pt`` (results copied elsewhere) is
not checked.

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
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sie.checkpoint import CHECKPOINT_FILENAME, checkpoint_hash
from sie.errors import UsageError
from sie.eval import figures
from sie.eval.context import parse_context_part
from sie.eval.figure_data import steering_sweeps
from sie.eval.run_results import RunResults, load_run
from sie.eval.verdict import THRESHOLDS, TOP1_MARGIN, beats, margin_for, online_rotation_floor, verdict
from sie.log import get_logger

__all__ = [
    "MAIN_COLUMNS",
    "context_table",
    "main_table",
    "stale_evaluation",
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
    Column("Top-1 aggregate (%)", "top1", "classification", "aggregate", "val", True),
    Column("Rot. R² inv", "r2", "rotation", "inv", "val"),
    Column("Rot. R² equi", "r2", "rotation", "equi", "val"),
    Column("Rot. R² full", "r2", "rotation", "full", "val"),
    Column("Colour R² full", "r2", "colour", "full", "val"),
    Column("Colour R² inv ↓", "r2", "colour", "inv", "val", invariance=True),
    Column("Transl. R² full", "r2", "translation", "full", "val"),
    Column("Transl. R² base full", "r2", "translation_base", "full", "val"),
    Column("MRR", "MRR", "retrieval", "embedding", "val-val"),
    Column("H@1", "H@1", "retrieval", "embedding", "val-val"),
    Column("H@5", "H@5", "retrieval", "embedding", "val-val"),
    Column("PRE ↓", "PRE", "retrieval", "embedding", "val-all"),
    Column("RankMe full", "rankme", "rank", "full", "val"),
)


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


def _bold_cells(runs: Sequence[RunResults], col: Column) -> set[int]:
    """Indices of the runs whose value is bold in ``col``.

    Only when at least two runs have a value (bold marks the best of a comparison). A value is
    eligible where it beats its own chance level in the column's direction (higher, or lower for PRE)
    by the verdict's margin (:func:`sie.eval.verdict.margin_for`: 5 points of top-k, 0.05 of R², 0.02
    of PRE, MRR and H@k), so that a value the verdict calls "at chance" is never bold; columns without
    a chance level (RankMe) get no bold. In an invariance column (colour R² of the invariant part, lower is better)
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
                and beats(top1["mean"], top1["chance"], True, TOP1_MARGIN)
            )
        else:
            margin = margin_for(col.metric)
            ok = s["chance"] is not None and beats(s["mean"], s["chance"], col.higher_is_better(s), margin)
        if ok:
            eligible.append((i, s["mean"]))
    if not eligible:
        return set()
    higher = col.higher_is_better(entries[0][1])
    best = (max if higher else min)(v for _, v in eligible)
    return {i for i, v in eligible if v == best}


def main_table(runs: Sequence[RunResults], stale: Collection[int] = ()) -> Table:
    """The paper-layout table: runs as rows, honest bold (see :func:`_bold_cells`), chance row last.

    Runs whose index is in ``stale`` (see :func:`stale_evaluation`) get "(stale)" after their name.
    """
    columns = [c for c in MAIN_COLUMNS if any(r.summary(c) for r in runs)]
    header = ["Method", *[c.title for c in columns]]
    rows: list[list[str]] = []
    bold: set[tuple[int, int]] = set()
    for j, col in enumerate(columns):
        bold |= {(i, j + 1) for i in _bold_cells(runs, col)}
    for i, r in enumerate(runs):
        row = [r.label + (" (stale)" if i in stale else "")]
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


_CONTEXT_METRICS = (("r2", "rotation", "rotation R²"), ("r2", "colour", "colour R²"),
                    ("MRR", "retrieval", "MRR"), ("H@1", "retrieval", "H@1"), ("H@5", "retrieval", "H@5"))  # fmt: skip


def _context_entries(run: RunResults) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """Summary entries of in-context records by (metric, task, environment, length)."""
    out = {}
    for s in run.results.get("summary", []):
        parsed = parse_context_part(s["part"])
        if parsed is not None:
            out[(s["metric"], s["task"], *parsed)] = s
    return out


def context_table(run: RunResults) -> Table | None:
    """Val R² and MRR/H@k against the context length, one row per (environment, metric); None without
    in-context records."""
    entries = _context_entries(run)
    if not entries:
        return None
    lengths = sorted({k[3] for k in entries})
    environments = list(dict.fromkeys(k[2] for k in entries))
    rows = []
    for env in environments:
        for metric, task, title in _CONTEXT_METRICS:
            cells = [entries.get((metric, task, env, c)) for c in lengths]
            if not any(cells):
                continue
            chance = next((c["chance"] for c in cells if c and c["chance"] is not None), None)
            rows.append(
                [env, title]
                + [_format(c["mean"], c["std"], c["n"], False) if c else "–" for c in cells]
                + ["–" if chance is None else _format(chance, 0.0, 1, False)]
            )
    caption = ("The method's outputs after a context of c tokens (c / 2 training pairs) in each environment, "
               "probed like the representation (val; MRR/H@k: val, val).")  # fmt: skip
    return Table(["environment", "metric", *[f"c={c}" for c in lengths], "chance"], rows, caption=caption)


def _context_blocks(run: RunResults, fig_dir: Path) -> list[Block]:
    table = context_table(run)
    if table is None:
        return []
    entries = _context_entries(run)
    panels: dict[str, dict[str, list[tuple[int, float]]]] = {}
    chance: dict[str, float] = {}
    for (metric, task, env, length), s in entries.items():
        title = next((t for m, k, t in _CONTEXT_METRICS[:3] if (m, k) == (metric, task)), None)
        if title is None:
            continue
        panels.setdefault(title, {}).setdefault(env, []).append((length, s["mean"]))
        if s["chance"] is not None:
            chance[title] = s["chance"]
    ordered = {t: panels[t] for _, _, t in _CONTEXT_METRICS[:3] if t in panels}
    path = figures.save_png(
        figures.context_length_curves(ordered, chance), fig_dir / f"context_{_slug(run.name)}.png"
    )
    return [
        ("h3", "Context length"),
        ("table", table),
        ("img", (path, f"R² and MRR against the context length, {run.name}")),
    ]


# ---- online-probe floor -----------------------------------------------------------------------------------


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


# ---- stale evaluations ------------------------------------------------------------------------------------


def stale_evaluation(run: RunResults) -> tuple[str, str] | None:
    """``(evaluated hash, current hash)`` when the run's ``checkpoint.pt`` is not the checkpoint its
    ``results.json`` evaluated (``"unknown"`` where results.json does not say, or ``"unreadable"``);
    None when they agree or the run directory has no checkpoint.pt."""
    path = run.run_dir / CHECKPOINT_FILENAME
    if not path.is_file():
        return None
    evaluated = str(run.results.get("checkpoint_hash") or "unknown")
    try:
        current = checkpoint_hash(path)
    except OSError:
        current = "unreadable"
    return None if current == evaluated else (evaluated, current)


def _stale_message(run: RunResults, hashes: tuple[str, str]) -> str:
    evaluated, current = hashes
    root = run.results.get("dataset", {}).get("root", "ROOT")
    return (
        f"stale evaluation of {run.label}: {run.run_dir / 'eval' / 'results.json'} evaluated checkpoint "
        f"{evaluated}, but {run.run_dir / CHECKPOINT_FILENAME} is now {current} (trained further or replaced "
        f"since); its numbers here describe the older checkpoint; re-run `sie eval {run.run_dir} --data {root}`"
    )


# ---- rendering ------------------------------------------------------------------------------------------

Block = tuple[
    str, Any
]  # ("h2"|"h3", text) | ("p"|"warn", text) | ("list", [text]) | ("table", Table) | ("img", (path, alt))


def _md(blocks: list[Block], out_dir: Path) -> str:
    lines: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + content, ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "warn":
            lines += [f"> **Warning:** {content}", ""]
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
p.warn { background: #fff3cd; border: 1px solid #e0b000; padding: 0.5em 0.8em; }
"""


def _html(blocks: list[Block], title: str) -> str:
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           f"<style>{_CSS}</style></head><body>"]  # fmt: skip
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(content)}</p>")
        elif kind == "warn":
            out.append(f"<p class='warn'><b>Warning:</b> {html.escape(content)}</p>")
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
    stale = {i: h for i, r in enumerate(runs) if (h := stale_evaluation(r)) is not None}
    for i, hashes in stale.items():
        _log.warning("warning: %s", _stale_message(runs[i], hashes))
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    blocks: list[Block] = [("h1", "sie evaluation report")]
    blocks += [("warn", _stale_message(runs[i], hashes)) for i, hashes in stale.items()]
    blocks += [("p", verdict(r)) for r in runs]
    blocks += [("p", THRESHOLDS), ("h2", "Comparison"), ("table", main_table(runs, stale))]
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
    for i, r in enumerate(runs):
        res = r.results
        cfg = res.get("config", {})
        checkpoint = f"checkpoint: {res.get('checkpoint_hash')}"
        if i in stale:
            checkpoint = (
                f"checkpoint evaluated: {stale[i][0]}; {CHECKPOINT_FILENAME} now: {stale[i][1]} "
                "(stale evaluation: re-run `sie eval`)"
            )
        blocks += [
            ("h2", f"Run {r.label}" + (" (stale)" if i in stale else "")),
            ("list", [
                f"run directory: {res.get('run')}",
                checkpoint,
                f"dataset: {res['dataset']['root']} ("
                + ", ".join(f"{s} {d['objects']} objects x {d['views']} views, manifest {d['manifest_hash']}"
                            for s, d in res["dataset"]["splits"].items()) + ")",
                f"protocol: preset {res.get('preset') or '(run config)'}, probe epochs {cfg.get('probe_epochs')}, "
                f"seeds {cfg.get('probe_seeds')}, reference BN {cfg.get('reference_bn')}, device {res.get('device')}",
                f"evaluation wall time: {res.get('wall_time_s')} s",
            ]),
            ("table", detail_table(r)),
        ]  # fmt: skip
        blocks += _context_blocks(r, fig_dir)
        blocks += _run_figures(r, fig_dir)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(_md(blocks, out_dir))
    html_path.write_text(_html(blocks, "sie evaluation report"))
    _log.info("wrote %s and %s (%d runs)", md_path, html_path, len(runs))
    return md_path, html_path
