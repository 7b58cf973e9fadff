"""Builders of hand-written ``eval/results.json`` files for the report and verdict tests."""

from __future__ import annotations

import json
from pathlib import Path

from sie.eval.protocol import DO_NOTHING_PRE_NOTE
from sie.eval.run import summarise


def record(
    metric: str,
    task: str,
    part: str,
    split: str,
    value: float,
    seed: int | None = 0,
    chance: float | None = 0.1,
    note: str | None = None,
):
    if note is None:
        note = DO_NOTHING_PRE_NOTE if metric == "PRE" else ""
    return {"metric": metric, "task": task, "part": part, "split": split, "seed": seed, "value": value,
            "chance": chance, "chance_note": note, "higher_is_better": metric != "PRE", "wall_time_s": 0.1}  # fmt: skip


def write_results(root: Path, name: str, records: list[dict], *, views: int = 10, run_config: dict | None = None,
                  method: str = "sie") -> Path:  # fmt: skip
    """A run directory holding only eval/results.json with these records."""
    run = root / name
    (run / "eval").mkdir(parents=True)
    results = {
        "format": "sie.eval.results", "version": 1, "run": str(run), "run_name": name, "method": method,
        "has_predictor": any(r["task"] == "retrieval" for r in records), "checkpoint_hash": "0", "preset": "quick",
        "dataset": {"root": "/data", "splits": {s: {"manifest_hash": "m", "objects": 3, "views": views}
                                                for s in ("train", "val")}},
        "config": {}, "device": "cpu", "notes": [], "wall_time_s": 1.0, "records": records,
        "summary": summarise(records),
    }  # fmt: skip
    if run_config is not None:
        results["run_config"] = run_config
    (run / "eval" / "results.json").write_text(json.dumps(results))
    return run
