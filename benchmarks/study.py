"""The budget study: every method at equal wall-clock training budgets on one procedural benchmark, the
full evaluation protocol at each budget, and tables and figures aggregated over training seeds.

Usage (repository root, after `make test` or `make demo` created .venv):

    .venv/bin/python benchmarks/study.py --out study --budgets 1 3 10 --seeds 0 1 2

What it does:

1. renders and packs the preset's benchmark (``--preset cpu``: the ``mini`` benchmark, 10 classes x 40
   objects x 20 views at 32 px) into OUT/data and OUT/packed, once;
2. **calibrates** each method's training speed: a short `sie train` (``--calibration-steps`` steps after
   10 warm-up steps, seed 0, logging every step) gives seconds per optimizer step on this machine, stored
   in OUT/calibration.json with the load average at that moment. A budget of B minutes is then
   ``round(60 B / seconds_per_step)`` steps for that method. Budgets are wall-clock on a quiet machine but
   executed as step counts, so the results do not depend on what else the machine runs later;
3. trains each (method, seed) to the smallest budget's steps, evaluates, then *resumes* the same run to the
   next budget (resume is exact and the preset's learning rate is constant, so this is the same as
   separate runs of each length), keeping each budget's ``results.json`` as
   OUT/runs/KEY/results_{B}min.json;
4. writes OUT/runs/KEY/study_record.json per run and OUT/study.json (all of them: per run and budget:
   steps, training and evaluation seconds, dataset hashes),
   OUT/study_table.json and .md (mean ± std over seeds, per budget), and figures: rotation R² against
   budget per method (equivariant, invariant, full), top-1 against budget, and the invariance /
   equivariance trade-off at the largest budget. ``--ceiling FILE.json`` (benchmarks/rotation_ceiling.py
   output) adds the supervised rotation ceiling to the rotation figure.

Re-running skips finished (run, budget) pairs and resumes interrupted ones; seeds run seed-major, so a
study cut short still has every method at the first seed. Because budgets are step counts, runs can be
spread over processes: ``--calibrate-only`` first (on a quiet machine, all cores), then e.g. two
processes with ``--threads 1`` and disjoint ``--only`` lists; every invocation writes the tables and
figures of all finished runs on disk, and ``--tables-only`` does only that. Nothing looks at the validation split before
the final evaluation of a budget: every hyperparameter is the preset's (the rows name their overrides).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from sie.config import Config, apply_overrides, resolve_config
from sie.data.pack import pack_dataset
from sie.engine import train
from sie.eval import evaluate
from sie.eval.report import write_report
from sie.log import setup_logging
from sie.render.generator import render_dataset

# (label, registered method, config overrides on the preset), in the order seeds run them: the rows the
# paper's question needs first. The ``cpu`` preset turns on model.hypernetwork_init_gain=1; the
# "reference init" row turns it off again, so the faithful SIE is measured side by side.
ENTRIES: list[tuple[str, str, list[str]]] = [
    ("SIE", "sie", []),
    ("VICReg", "vicreg", []),
    ("SimCLR", "simclr", []),
    ("EquiMod (SimCLR)", "equimod", []),
    ("SIE (reference init)", "sie", ["model.hypernetwork_init_gain=0"]),
    ("SIE (MLP predictor)", "sie", ["model.predictor_type=mlp"]),
    ("SIE (no predictor variance)", "sie-novar", []),
    ("SimCLR + AugSelf", "augself", []),
    ("Supervised", "supervised", []),
    # The world-model methods that followed SIE (hafezgh/seq-jepa's baselines and seq-JEPA itself), with
    # their own published heads and EMA settings on the same backbone, batch, lr and budget.
    ("seq-JEPA", "seq-jepa", []),
    ("BYOL", "byol", []),
    ("Conditional BYOL", "byol-cond", []),
    ("SEN", "sen", []),
    # The capsule projectors (AberdeenML/EquiCaps, AberdeenML/CapsIE) on the backbone's last feature map,
    # with their published capsule counts and loss weights.
    ("EquiCaps", "equicaps", []),
    ("CapsIE", "capsie", []),
]

# What moves SIE: one documented, off-by-default knob changed at a time from the "SIE" row (the cpu preset),
# run with ``--rows ablation`` (usually at one budget), at the SIE row's calibrated step counts. The values
# bracket the preset's (equi 128 of 256, equi_factor 0.45, lr 1e-3); none was chosen from val results.
ABLATIONS: list[tuple[str, str, list[str]]] = [
    ("SIE, equi 64 of 256", "sie", ["model.equi=64"]),
    ("SIE, equi 192 of 256", "sie", ["model.equi=192"]),
    ("SIE, equi_factor 0.9", "sie", ["model.equi_factor=0.9"]),
    ("SIE, lr 2e-3", "sie", ["optim.lr=2e-3"]),
]
ROWS = {"main": ENTRIES, "ablation": ABLATIONS}

# (task, metric, part, split, title, higher is better)
TABLE_COLUMNS: list[tuple[str, str, str, str, str, bool]] = [
    ("classification", "top1", "inv", "val", "Top-1 inv (%)", True),
    ("classification", "top1", "full", "val", "Top-1 full (%)", True),
    ("classification", "top1", "aggregate", "val", "Top-1 aggregate (%)", True),
    ("rotation", "r2", "equi", "val", "Rot. R² equi", True),
    ("rotation", "r2", "inv", "val", "Rot. R² inv", True),
    ("rotation", "r2", "full", "val", "Rot. R² full", True),
    ("absolute_rotation", "r2", "full", "val", "Abs. rot. R² full", True),
    ("colour", "r2", "inv", "val", "Colour R² inv", False),
    ("retrieval", "MRR", "embedding", "val-val", "MRR", True),
    ("retrieval", "H@1", "embedding", "val-val", "H@1", True),
    ("retrieval", "PRE", "embedding", "val-all", "PRE ↓", False),
    ("rank", "rankme", "full", "val", "RankMe full", True),
]

WARMUP_STEPS = 10


def slug(label: str) -> str:
    """'SimCLR + AugSelf' -> 'simclr-augself': the run-directory and --only name of a row."""
    return re.sub("-+", "-", "".join(c if c.isalnum() else "-" for c in label.lower())).strip("-")


def budget_name(minutes: float) -> str:
    return f"{minutes:g}min"


def entry_config(base: Config, method: str, overrides: list[str], seed: int) -> Config:
    cfg = apply_overrides(base, [f"model.method={method}", f"train.seed={seed}", *overrides])
    return cfg


# ---- calibration -----------------------------------------------------------------------------------


def seconds_per_step(metrics_path: Path, warmup: int) -> float:
    """Median-free average seconds per step between the record at step ``warmup`` and the last one.

    metrics.jsonl written with ``train.log_every_s=0`` has one record per step with the run's elapsed
    ``time_s``; the first ``warmup`` steps (allocator and thread-pool start-up) are left out.
    """
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    timed = [(r["step"], r["time_s"]) for r in records if "time_s" in r]
    start = next((t for s, t in timed if s == warmup), None)
    if start is None or timed[-1][0] <= warmup:
        raise RuntimeError(f"{metrics_path}: no per-step records past step {warmup}")
    last_step, last_time = timed[-1]
    return (last_time - start) / (last_step - warmup)


def calibrate(
    out: Path, base: Config, steps: int, entries: list[tuple[str, str, list[str]]]
) -> dict[str, Any]:
    """Seconds per optimizer step of each entry (seed 0), measured once and stored."""
    path = out / "calibration.json"
    calibration: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for label, method, overrides in entries:
        key = slug(label)
        if key in calibration:
            continue
        run_dir = out / "calibration" / key
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = entry_config(base, method, overrides, seed=0)
        cfg = apply_overrides(cfg, ["train.log_every_s=0", "train.checkpoint_every_epochs=1000000"])
        train(cfg, run_dir, max_steps=WARMUP_STEPS + steps)
        calibration[key] = {
            "seconds_per_step": round(seconds_per_step(run_dir / "metrics.jsonl", WARMUP_STEPS), 5),
            "steps_timed": steps,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        shutil.rmtree(run_dir, ignore_errors=True)
        path.write_text(json.dumps(calibration, indent=2))
    return calibration


def budget_steps(minutes: float, seconds_per_step: float) -> int:
    return max(1, round(60.0 * minutes / seconds_per_step))


# ---- aggregation -----------------------------------------------------------------------------------


def _summary_value(
    results: dict[str, Any], task: str, metric: str, part: str, split: str
) -> dict[str, Any] | None:
    for s in results["summary"]:
        if (s["task"], s["metric"], s["part"], s["split"]) == (task, metric, part, split):
            return dict(s)
    return None


def aggregate(
    out: Path, records: dict[str, Any], budget: str, entries: list[tuple[str, str, list[str]]] | None = None
) -> list[dict[str, Any]]:
    """One row per method at one budget: mean, std and n over training seeds of every column."""
    rows = []
    for label, _, _ in entries if entries is not None else ENTRIES:
        keys = [k for k, r in records.items() if r["label"] == label and budget in r["budgets"]]
        if not keys:
            continue
        row: dict[str, Any] = {
            "label": label,
            "budget": budget,
            "seeds": sorted(records[k]["seed"] for k in keys),
            "steps": records[keys[0]]["budgets"][budget]["steps"],
            "cells": {},
        }
        row["train_s"] = statistics.mean(records[k]["budgets"][budget]["train_s"] for k in keys)
        for task, metric, part, split, title, _ in TABLE_COLUMNS:
            values, chance = [], None
            for k in keys:
                results = json.loads((out / "runs" / k / f"results_{budget}.json").read_text())
                s = _summary_value(results, task, metric, part, split)
                if s is not None:
                    values.append(float(s["mean"]))
                    chance = s["chance"]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                row["cells"][title] = {"mean": statistics.mean(values), "std": std, "n": len(values),
                                       "chance": chance}  # fmt: skip
        rows.append(row)
    return rows


def _cell(cell: dict[str, Any] | None, percent: bool) -> str:
    if cell is None:
        return "–"
    scale, digits = (100.0, 1) if percent else (1.0, 3)
    text = f"{cell['mean'] * scale:.{digits}f}"
    return text + (f" ± {cell['std'] * scale:.{digits}f}" if cell["n"] > 1 else "")


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """One row per method at one budget (mean ± std over seeds), a chance row last."""
    titles = [c[4] for c in TABLE_COLUMNS]
    header = "| Method | seeds | steps | " + " | ".join(titles) + " | wall min (shared CPU) |"
    lines = [header, "|---" * (len(titles) + 4) + "|"]
    for row in rows:
        cells = [_cell(row["cells"].get(t), t.startswith("Top-1")) for t in titles]
        seeds = ",".join(str(s) for s in row["seeds"])
        lines.append(
            f"| {row['label']} | {seeds} | {row['steps']} | "
            + " | ".join(cells)
            + f" | {row['train_s'] / 60:.1f} |"
        )
    chance = []
    for t in titles:
        values = [
            r["cells"][t]["chance"] for r in rows if t in r["cells"] and r["cells"][t]["chance"] is not None
        ]
        chance.append(_cell({"mean": values[0], "n": 1}, t.startswith("Top-1")) if values else "–")
    lines.append("| chance level | | | " + " | ".join(chance) + " | |")
    return "\n".join(lines) + "\n"


# ---- figures ---------------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def budget_figure(
    table: dict[str, list[dict[str, Any]]], budgets: list[float], path: Path, ceiling: dict[str, Any] | None
) -> None:
    """Rotation R² (equivariant, invariant, full part) and top-1 against the training budget, per method."""
    plt = _plt()
    panels = [("Rot. R² equi", "rotation R², equivariant part"), ("Rot. R² inv", "rotation R², invariant part"),
              ("Rot. R² full", "rotation R², full representation"), ("Top-1 full (%)", "top-1 %, full representation")]  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(17.0, 4.4), dpi=110)
    labels = [label for label, _, _ in ENTRIES]
    # One colour and marker per row: tab20's pairs would repeat hues, so take its dark shades first.
    palette = [plt.cm.tab20(2 * i) for i in range(10)] + [plt.cm.tab20(2 * i + 1) for i in range(10)]
    colours = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
    markers = {label: "osD^v<>ph*"[i % 10] for i, label in enumerate(labels)}
    for ax, (column, title) in zip(axes, panels, strict=True):
        floor = None
        for label in labels:
            xs, ys, es = [], [], []
            for minutes in budgets:
                row = next((r for r in table.get(budget_name(minutes), []) if r["label"] == label), None)
                cell = None if row is None else row["cells"].get(column)
                if cell is None:
                    continue
                scale = 100.0 if column.startswith("Top-1") else 1.0
                xs.append(minutes)
                ys.append(scale * cell["mean"])
                es.append(scale * cell["std"])
                floor = scale * cell["chance"] if cell["chance"] is not None else floor
            if xs:
                ax.errorbar(
                    xs, ys, yerr=es, marker=markers[label], capsize=3, label=label, color=colours[label]
                )
        if ceiling is not None and column.startswith("Rot."):
            curve = ceiling["curve"]
            # Minutes on a quiet machine: from the steps and a quietly measured rate where one is given.
            rate = ceiling.get("quiet_steps_per_s")
            minutes = [p["step"] / rate / 60 if rate else p["wall_s"] / 60 for p in curve]
            ax.plot(minutes, [p["val_r2"] for p in curve], color="black", linestyle=":",
                    label="supervised rotation ceiling")  # fmt: skip
        if floor is not None:
            name = "chance" if column.startswith("Top-1") else "constant-predictor floor"
            ax.axhline(floor, color="grey", linestyle="--", linewidth=1)
            ax.annotate(name, (budgets[0], floor), color="grey", fontsize=7, va="bottom")
        ax.set_xscale("log")
        ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
        ax.set_xlabel("training budget (minutes on 2 CPU cores)")
        ax.set_title(title, fontsize=10)
    legend: dict[str, Any] = {}
    for ax in axes:  # a method appears only in the panels it has values for
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(name, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def trade_off_figure(rows: list[dict[str, Any]], path: Path, budget: str) -> None:
    """Top-1 of the invariant (or full) part against rotation R² of the equivariant (or full) part."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=120)
    floor = None
    for row in rows:
        cells = row["cells"]
        top1 = cells.get("Top-1 inv (%)") or cells.get("Top-1 full (%)")
        rot = cells.get("Rot. R² equi") or cells.get("Rot. R² full")
        if top1 is None or rot is None:
            continue
        floor = rot["chance"]
        ax.errorbar(rot["mean"], 100 * top1["mean"], xerr=rot["std"], yerr=100 * top1["std"], fmt="o",
                    capsize=3, label=row["label"])  # fmt: skip
    if floor is not None:
        ax.axvline(floor, color="grey", linestyle="--", linewidth=1)
        ax.text(floor, ax.get_ylim()[0], " constant-predictor floor", color="grey", fontsize=8, va="bottom")
    ax.set_xlabel("rotation R² (equivariant part; full representation if not split)")
    ax.set_ylabel("top-1 % (invariant part; full if not split)")
    ax.set_title(f"Invariance vs equivariance at {budget} of training (mean ± std over seeds)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- the study -------------------------------------------------------------------------------------


def run_entry(
    out: Path, base: Config, packed: Path, label: str, method: str, overrides: list[str], seed: int,
    budgets: list[float], calibration: dict[str, Any], records: dict[str, Any], preset: str,
) -> Path:  # fmt: skip
    """Train one (method, seed) through every budget, evaluating at each; update ``records`` in place."""
    key = f"{slug(label)}-s{seed}"
    run_dir = out / "runs" / key
    record_path = run_dir / "study_record.json"
    if record_path.is_file():
        records[key] = json.loads(record_path.read_text())
    record = records.setdefault(key, {"label": label, "method": method, "overrides": overrides,
                                      "seed": seed, "budgets": {}})  # fmt: skip
    # Ablation rows take the SIE row's step counts: the same method, so equal steps = equal budget.
    per_step = calibration[slug(label) if slug(label) in calibration else "sie"]["seconds_per_step"]
    # Enough epochs for the largest budget; max_steps stops each budget (the lr is constant).
    cfg = entry_config(base, method, overrides, seed)
    for minutes in budgets:
        name = budget_name(minutes)
        results_copy = run_dir / f"results_{name}.json"
        if name in record["budgets"] and results_copy.is_file():
            continue
        steps = budget_steps(minutes, per_step)
        t0 = time.perf_counter()
        train(cfg, run_dir, resume=(run_dir / "checkpoint.pt").is_file(), max_steps=steps)
        t1 = time.perf_counter()
        reached = json.loads((run_dir / "run.json").read_text()).get("step")
        if reached != steps:  # stopped by a signal: the budget is not done, nothing is recorded
            raise SystemExit(
                f"{run_dir}: stopped at step {reached} of {steps}; run the study again to resume"
            )
        results_path = evaluate(run_dir, packed, cfg, preset_name=f"study-{preset}")
        t2 = time.perf_counter()
        shutil.copyfile(results_path, results_copy)
        info = json.loads((run_dir / "run.json").read_text())
        results = json.loads(results_path.read_text())
        record["budgets"][name] = {
            "minutes": minutes,
            "steps": info.get("step"),
            "train_s": round(info.get("wall_time_s", t1 - t0), 1),
            "this_segment_s": round(t1 - t0, 1),
            "eval_s": round(t2 - t1, 1),
            "dataset": results["dataset"],
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "torch_threads": torch.get_num_threads(),
        }
        record_path.write_text(json.dumps(record, indent=2))
    return run_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("study"))
    parser.add_argument(
        "--preset", default="cpu", help="training preset; its render section is the benchmark"
    )
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for every run and the benchmark (e.g. smaller sizes for a smoke test)")  # fmt: skip
    parser.add_argument(
        "--budgets", type=float, nargs="+", default=[1.0, 3.0, 10.0], help="minutes of training"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", default=None, help="method slugs to run (default: all)")
    parser.add_argument("--calibration-steps", type=int, default=40)
    parser.add_argument("--ceiling", type=Path, default=None, help="rotation_ceiling.py JSON to draw")
    parser.add_argument(
        "--ceiling-steps-per-s",
        type=float,
        default=None,
        help="the ceiling's quietly measured steps/s: places its curve by steps when it ran beside other work",
    )
    parser.add_argument("--no-report", action="store_true", help="skip `sie report` of the runs")
    parser.add_argument("--calibrate-only", action="store_true", help="render, pack and calibrate, then stop")
    parser.add_argument(
        "--tables-only", action="store_true", help="train nothing: tables and figures of the finished runs"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads of this process")
    parser.add_argument(
        "--rows", choices=sorted(ROWS), default="main", help="the method rows, or the SIE ablation"
    )
    args = parser.parse_args(argv)
    setup_logging()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    budgets = sorted(args.budgets)
    out = args.out.resolve()
    data_dir, packed_dir = out / "data", out / "packed"
    base = resolve_config(args.preset, overrides=[f"data.root={packed_dir}", "train.epochs=1000000",
                                                  *args.overrides])  # fmt: skip
    started = time.perf_counter()
    render_dataset(base.render, data_dir)
    pack_dataset(data_dir, packed_dir, resolution=base.data.resolution)
    entries = ROWS[args.rows]
    chosen = [e for e in entries if not args.only or slug(e[0]) in args.only]
    calibration = calibrate(out, base, args.calibration_steps, chosen if args.rows == "main" else ENTRIES[:1])
    if args.calibrate_only:
        print(f"study: calibration in {out / 'calibration.json'}")
        return
    records: dict[str, Any] = {}
    if not args.tables_only:
        for seed in args.seeds:
            for label, method, overrides in chosen:
                run_entry(out, base, packed_dir, label, method, overrides, seed, budgets, calibration, records,
                          args.preset)  # fmt: skip
    # Tables and figures cover every finished run of these rows on disk, whichever process trained it.
    labels = {label for label, _, _ in entries}
    run_dirs = []
    for path in sorted((out / "runs").glob("*/study_record.json")):
        record = json.loads(path.read_text())
        if record["label"] in labels:
            records[path.parent.name] = record
            run_dirs.append(path.parent)
    (out / ("study.json" if args.rows == "main" else f"study_{args.rows}.json")).write_text(
        json.dumps(records, indent=2)
    )
    if not args.no_report:
        write_report(run_dirs, out / "report")
    table = {budget_name(b): aggregate(out, records, budget_name(b), entries) for b in budgets}
    if args.rows != "main":
        stem = f"study_{args.rows}"
        (out / f"{stem}_table.json").write_text(json.dumps(table, indent=2))
        (out / f"{stem}_table.md").write_text(
            "\n".join(f"### {name} of training\n\n{table_markdown(rows)}" for name, rows in table.items())
        )
        print(f"study: {len(run_dirs)} {args.rows} runs; table {out / (stem + '_table.md')}")
        return
    (out / "study_table.json").write_text(json.dumps(table, indent=2))
    (out / "study_table.md").write_text(
        "\n".join(f"### {name} of training\n\n{table_markdown(rows)}" for name, rows in table.items())
    )
    ceiling = json.loads(args.ceiling.read_text()) if args.ceiling is not None else None
    if ceiling is not None and args.ceiling_steps_per_s is not None:
        ceiling["quiet_steps_per_s"] = args.ceiling_steps_per_s
    budget_figure(table, budgets, out / "study_budgets.png", ceiling)
    largest = budget_name(budgets[-1])
    trade_off_figure(table[largest], out / "study_tradeoff.png", largest)
    meta = {
        "preset": args.preset,
        "overrides": args.overrides,
        "budgets_min": budgets,
        "ceiling": str(args.ceiling) if args.ceiling is not None else None,
        "ceiling_steps_per_s": args.ceiling_steps_per_s,
        "cpu": _cpu_name(),
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "this_invocation_s": round(time.perf_counter() - started, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    (out / "study_meta.json").write_text(json.dumps(meta, indent=2))
    print(f"study: {len(run_dirs)} runs x {len(budgets)} budgets; table {out / 'study_table.md'}")


if __name__ == "__main__":
    main()
