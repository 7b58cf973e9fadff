"""Reproduction study on the built-in procedural benchmark: every method at an equal budget, then the
full evaluation protocol, then one comparison table aggregated over training seeds.

Usage (repository root):

    .venv/bin/python benchmarks/study.py --out study --seeds 0 1

It renders and packs the study benchmark into OUT/data and OUT/packed (once), trains each method of
ENTRIES for each seed from the same configuration (the cpu-small preset at the study size; only the
method and its variant keys differ, so every run takes the same number of optimizer steps on the same
data), evaluates each with the same probe schedule, and writes:

* OUT/study.json: per run (method, seed): wall times, steps, the dataset manifest checksum;
* OUT/study_table.md and OUT/study_table.json: mean ± std over training seeds of the main metrics;
* OUT/study.png: the invariance / equivariance trade-off (top-1 vs rotation R²) per method;
* OUT/report: `sie report` of every run (per-run figures);
* OUT/study_meta.json: sizes, machine, total wall time.

Re-running skips finished runs and resumes interrupted ones. Nothing here looks at the validation split
before the final evaluation: every hyperparameter is the preset's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from sie.config import apply_overrides
from sie.data.pack import pack_dataset
from sie.demo import DEMO_SIZES, DemoSize, demo_config
from sie.eval import evaluate
from sie.eval.report import write_report
from sie.log import setup_logging
from sie.render.generator import render_dataset
from sie.train import train

# (label, registered method, config overrides): the rows of the paper's main table that exist here.
ENTRIES: list[tuple[str, str, list[str]]] = [
    ("SIE", "sie", []),
    ("SIE (no predictor variance)", "sie-novar", []),
    ("SIE (MLP predictor)", "sie", ["model.predictor_type=mlp"]),
    ("VICReg", "vicreg", []),
    ("SimCLR", "simclr", []),
    ("SimCLR + AugSelf", "augself", []),
    ("EquiMod (SimCLR)", "equimod", []),
    ("EquiMod (VICReg)", "equimod-vicreg", []),
    ("Supervised", "supervised", []),
]

# 10 classes x 48 objects x 10 views at 64 px (4,800 images; 380 train / 100 val objects), batch 64:
# 5 optimizer steps per epoch, so 50 epochs = 250 steps, about 4 minutes per method on 2 CPU cores.
SIZES: dict[str, DemoSize] = {
    "study": DemoSize(10, 48, 10, 64, epochs=50, batch_size=64, probe_epochs=40, disk_mb=800, memory_mb=3500),
    **DEMO_SIZES,
}

# (task, metric, part, split, title, higher is better)
TABLE_COLUMNS: list[tuple[str, str, str, str, str, bool]] = [
    ("classification", "top1", "inv", "val", "Top-1 inv (%)", True),
    ("classification", "top1", "full", "val", "Top-1 full (%)", True),
    ("rotation", "r2", "equi", "val", "Rot. R² equi", True),
    ("rotation", "r2", "inv", "val", "Rot. R² inv", True),
    ("rotation", "r2", "full", "val", "Rot. R² full", True),
    ("colour", "r2", "inv", "val", "Colour R² inv", False),
    ("retrieval", "MRR", "embedding", "val-val", "MRR", True),
    ("retrieval", "H@1", "embedding", "val-val", "H@1", True),
    ("retrieval", "PRE", "embedding", "val-all", "PRE ↓", False),
    ("rank", "rankme", "full", "val", "RankMe full", True),
    ("rank", "rankme", "embedding", "val", "RankMe emb.", True),
]


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-").replace("--", "-")


def _summary_value(
    results: dict[str, Any], task: str, metric: str, part: str, split: str
) -> dict[str, Any] | None:
    for s in results["summary"]:
        if (s["task"], s["metric"], s["part"], s["split"]) == (task, metric, part, split):
            return dict(s)
    return None


def aggregate(out: Path, records: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method: mean, std and n over training seeds of every TABLE_COLUMNS entry."""
    rows = []
    for label, _, _ in ENTRIES:
        keys = [k for k, r in records.items() if r["label"] == label]
        if not keys:
            continue
        row: dict[str, Any] = {"label": label, "seeds": sorted(records[k]["seed"] for k in keys), "cells": {}}
        row["train_s"] = statistics.mean(records[k]["train_s"] for k in keys)
        for task, metric, part, split, title, _ in TABLE_COLUMNS:
            values, chance = [], None
            for k in keys:
                results = json.loads((out / "runs" / k / "eval" / "results.json").read_text())
                s = _summary_value(results, task, metric, part, split)
                if s is not None:
                    values.append(float(s["mean"]))
                    chance = s["chance"]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                row["cells"][title] = {
                    "mean": statistics.mean(values),
                    "std": std,
                    "n": len(values),
                    "chance": chance,
                }
        rows.append(row)
    return rows


def _cell(cell: dict[str, Any] | None, percent: bool) -> str:
    if cell is None:
        return "n/a"
    scale, digits = (100.0, 1) if percent else (1.0, 3)
    text = f"{cell['mean'] * scale:.{digits}f}"
    return text + (f" ± {cell['std'] * scale:.{digits}f}" if cell["n"] > 1 else "")


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """The study table: one row per method, mean ± std over training seeds, a chance row last."""
    titles = [c[4] for c in TABLE_COLUMNS]
    lines = ["| Method | seeds | " + " | ".join(titles) + " | train min |", "|---" * (len(titles) + 3) + "|"]
    for row in rows:
        cells = [_cell(row["cells"].get(t), t.startswith("Top-1")) for t in titles]
        seeds = ",".join(str(s) for s in row["seeds"])
        lines.append(f"| {row['label']} | {seeds} | " + " | ".join(cells) + f" | {row['train_s'] / 60:.1f} |")
    chance = []
    for t in titles:
        values = [
            r["cells"][t]["chance"] for r in rows if t in r["cells"] and r["cells"][t]["chance"] is not None
        ]
        chance.append(_cell({"mean": values[0], "n": 1}, t.startswith("Top-1")) if values else "–")
    lines.append("| chance level | | " + " | ".join(chance) + " | |")
    return "\n".join(lines) + "\n"


def trade_off_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Top-1 of the invariant (or full) part against rotation R² of the equivariant (or full) part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=120)
    floor = None
    for row in rows:
        cells = row["cells"]
        top1 = cells.get("Top-1 inv (%)") or cells.get("Top-1 full (%)")
        rot = cells.get("Rot. R² equi") or cells.get("Rot. R² full")
        if top1 is None or rot is None:
            continue
        floor = rot["chance"]
        ax.errorbar(
            rot["mean"], 100 * top1["mean"], xerr=rot["std"], yerr=100 * top1["std"], fmt="o", capsize=3,
            label=row["label"],
        )  # fmt: skip
    if floor is not None:
        ax.axvline(floor, color="grey", linestyle="--", linewidth=1)
        ax.text(floor, ax.get_ylim()[0], " constant-predictor floor", color="grey", fontsize=8, va="bottom")
    ax.set_xlabel("rotation R² (equivariant part; full representation if not split)")
    ax.set_ylabel("top-1 % (invariant part; full if not split)")
    ax.set_title("Invariance vs equivariance at an equal budget (mean ± std over seeds)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("study"))
    parser.add_argument("--size", default="study", choices=sorted(SIZES))
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the size's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only", nargs="*", default=None, help="method slugs to run (default: all)")
    parser.add_argument(
        "--reevaluate",
        action="store_true",
        help="evaluate finished runs again (e.g. after the protocol gained a metric); keeps their training times",
    )
    args = parser.parse_args(argv)
    setup_logging()
    spec = SIZES[args.size]
    if args.epochs is not None:
        spec = dataclasses.replace(spec, epochs=args.epochs)
    out = args.out.resolve()
    data_dir, packed_dir = out / "data", out / "packed"
    base = demo_config(spec, method="sie", device="cpu", seed=0, data_root=packed_dir)
    started = time.perf_counter()
    render_dataset(base.render, data_dir)
    pack_dataset(data_dir, packed_dir, resolution=spec.image_size)
    record_path = out / "study.json"
    records: dict[str, Any] = json.loads(record_path.read_text()) if record_path.is_file() else {}
    run_dirs = []
    # Seed-major: a budget cut short still leaves every method with at least one seed.
    for seed in args.seeds:
        for label, method, overrides in ENTRIES:
            if args.only and slug(label) not in args.only:
                continue
            key = f"{slug(label)}-s{seed}"
            run_dir = out / "runs" / key
            run_dirs.append(run_dir)
            if key in records and (run_dir / "eval" / "results.json").is_file():
                if args.reevaluate:
                    cfg = demo_config(spec, method=method, device="cpu", seed=seed, data_root=packed_dir)
                    cfg = apply_overrides(cfg, overrides) if overrides else cfg
                    t1 = time.perf_counter()
                    evaluate(run_dir, packed_dir, cfg, preset_name=f"study-{args.size}")
                    records[key]["reevaluate_s"] = round(time.perf_counter() - t1, 1)
                    record_path.write_text(json.dumps(records, indent=2))
                continue
            cfg = demo_config(spec, method=method, device="cpu", seed=seed, data_root=packed_dir)
            cfg = apply_overrides(cfg, overrides) if overrides else cfg
            t0 = time.perf_counter()
            train(cfg, run_dir, resume=(run_dir / "checkpoint.pt").is_file())
            t1 = time.perf_counter()
            results_path = evaluate(run_dir, packed_dir, cfg, preset_name=f"study-{args.size}")
            t2 = time.perf_counter()
            results = json.loads(results_path.read_text())
            steps = json.loads((run_dir / "run.json").read_text()).get("step")
            records[key] = {
                "label": label,
                "method": method,
                "overrides": overrides,
                "seed": seed,
                "steps": steps,
                "train_s": round(t1 - t0, 1),
                "eval_s": round(t2 - t1, 1),
                "dataset": results["dataset"],
            }
            record_path.write_text(json.dumps(records, indent=2))
    write_report(run_dirs, out / "report")
    rows = aggregate(out, records)
    (out / "study_table.json").write_text(json.dumps(rows, indent=2))
    (out / "study_table.md").write_text(table_markdown(rows))
    trade_off_figure(rows, out / "study.png")
    meta = {
        "size": dataclasses.asdict(spec),
        "steps_per_run": sorted({r["steps"] for r in records.values()}),
        "cpu": _cpu_name(),
        "cores": len(__import__("os").sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        ("reevaluate_s" if args.reevaluate else "total_s"): round(time.perf_counter() - started, 1),
        "epochs_to_steps": f"{spec.epochs} epochs x floor(train objects / {spec.batch_size})",
        "train_minutes_per_run": round(statistics.mean(r["train_s"] for r in records.values()) / 60, 2)
        if records
        else math.nan,
    }
    meta_path = out / "study_meta.json"
    previous = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta_path.write_text(json.dumps({**previous, **meta}, indent=2))  # a re-evaluation keeps total_s
    print(f"study: {len(run_dirs)} runs; table {out / 'study_table.md'}; report in {out / 'report'}")


if __name__ == "__main__":
    main()
