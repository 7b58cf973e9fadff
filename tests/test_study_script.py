"""benchmarks/study.py on the tiny demo size: two methods, two seeds, one epoch each; the table
aggregates over seeds and the figure is drawn."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("warp")


def _study_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "study.py"
    spec = importlib.util.spec_from_file_location("study_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_runs_aggregates_seeds_and_reevaluates(tmp_path: Path) -> None:
    study = _study_module()
    out = tmp_path / "study"
    args = [
        "--out",
        str(out),
        "--size",
        "tiny",
        "--epochs",
        "1",
        "--seeds",
        "0",
        "1",
        "--only",
        "sie",
        "vicreg",
    ]
    study.main(args)
    records = json.loads((out / "study.json").read_text())
    assert sorted(records) == ["sie-s0", "sie-s1", "vicreg-s0", "vicreg-s1"]
    rows = {r["label"]: r for r in json.loads((out / "study_table.json").read_text())}
    assert set(rows) == {"SIE", "VICReg"}
    top1 = rows["SIE"]["cells"]["Top-1 inv (%)"]
    per_seed = []
    for key in ("sie-s0", "sie-s1"):
        results = json.loads((out / "runs" / key / "eval" / "results.json").read_text())
        per_seed += [s["mean"] for s in results["summary"] if (s["task"], s["part"], s["metric"]) == (
            "classification", "inv", "top1")]  # fmt: skip
    assert top1["n"] == 2 and top1["mean"] == pytest.approx(sum(per_seed) / 2)
    assert "Rot. R² equi" not in rows["VICReg"]["cells"]  # VICReg has no split representation
    table = (out / "study_table.md").read_text()
    assert table.count("\n") == 2 + 2 + 1 and "chance level" in table
    assert (out / "study.png").stat().st_size > 10_000 and (out / "report" / "report.md").is_file()
    train_s = {k: r["train_s"] for k, r in records.items()}
    study.main([*args, "--reevaluate"])
    again = json.loads((out / "study.json").read_text())
    assert {k: r["train_s"] for k, r in again.items()} == train_s  # training times survive a re-evaluation
    assert all("reevaluate_s" in r for r in again.values())
    assert "total_s" in json.loads((out / "study_meta.json").read_text())
