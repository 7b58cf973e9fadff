"""benchmarks/study.py on a tiny benchmark: two methods, two seeds, two budgets; calibration turns
budgets into steps, each budget is evaluated, seeds are aggregated, figures are drawn, re-runs resume."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("warp")


pytestmark = pytest.mark.slow  # end to end; `pytest -m "not slow"` skips it for a quick loop


def _study_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "study.py"
    spec = importlib.util.spec_from_file_location("study_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seconds_per_step_leaves_out_the_warmup(tmp_path: Path) -> None:
    study = _study_module()
    metrics = tmp_path / "metrics.jsonl"
    # Steps 1-10 slow (start-up), then 0.5 s per step.
    times = [3.0 * s for s in range(1, 11)] + [30.0 + 0.5 * s for s in range(1, 6)]
    metrics.write_text("\n".join(json.dumps({"step": i + 1, "time_s": t}) for i, t in enumerate(times)))
    assert study.seconds_per_step(metrics, 10) == pytest.approx(0.5)
    assert study.budget_steps(1.0, 0.5) == 120 and study.budget_steps(0.001, 10.0) == 1


def test_study_runs_budgets_aggregates_seeds_and_resumes(tmp_path: Path) -> None:
    study = _study_module()
    out = tmp_path / "study"
    args = [
        "--out", str(out), "--preset", "cpu",
        "--set", "render.classes=3", "render.objects_per_class=6", "render.views=4", "train.batch_size=8",
        "eval.probe_epochs=2", "model.mlp=32-32-32", "model.equi=64", "eval.tasks=[classification,rotation]",
        "--budgets", "0.01", "0.03", "--seeds", "0", "1", "--only", "sie", "vicreg",
        "--calibration-steps", "3", "--no-report",
    ]  # fmt: skip
    study.main([*args, "--calibrate-only"])
    assert (out / "calibration.json").is_file() and not (out / "runs").exists()
    # Runs spread over invocations with disjoint --only lists, then one that writes the tables.
    study.main([*args[:-6], "--only", "vicreg", "--calibration-steps", "3", "--no-report", "--threads", "1"])
    partial = json.loads((out / "study_table.json").read_text())  # tables of what is finished so far
    assert [r["label"] for r in partial["0.03min"]] == ["VICReg"]
    study.main(args)
    calibration = json.loads((out / "calibration.json").read_text())
    assert set(calibration) == {"sie", "vicreg"} and all(
        c["seconds_per_step"] > 0 for c in calibration.values()
    )
    records = json.loads((out / "study.json").read_text())
    assert sorted(records) == ["sie-s0", "sie-s1", "vicreg-s0", "vicreg-s1"]
    for key, record in records.items():
        steps = [record["budgets"][b]["steps"] for b in ("0.01min", "0.03min")]
        per_step = calibration[key.rsplit("-s", 1)[0]]["seconds_per_step"]
        assert steps == [study.budget_steps(0.01, per_step), study.budget_steps(0.03, per_step)]
        assert (out / "runs" / key / "results_0.01min.json").is_file()
    table = json.loads((out / "study_table.json").read_text())
    assert set(table) == {"0.01min", "0.03min"}
    sie_row = next(r for r in table["0.03min"] if r["label"] == "SIE")
    per_seed = []
    for key in ("sie-s0", "sie-s1"):
        results = json.loads((out / "runs" / key / "results_0.03min.json").read_text())
        per_seed += [s["mean"] for s in results["summary"] if (s["task"], s["part"], s["metric"]) == (
            "classification", "inv", "top1")]  # fmt: skip
    cell = sie_row["cells"]["Top-1 inv (%)"]
    assert cell["n"] == 2 and cell["mean"] == pytest.approx(sum(per_seed) / 2)
    vicreg_row = next(r for r in table["0.03min"] if r["label"] == "VICReg")
    assert "Rot. R² equi" not in vicreg_row["cells"]  # VICReg has no split representation
    markdown = (out / "study_table.md").read_text()
    assert markdown.count("chance level") == 2 and "### 0.03min of training" in markdown
    for figure in ("study_budgets.png", "study_tradeoff.png"):
        assert (out / figure).stat().st_size > 10_000
    stamp = (out / "runs" / "sie-s0" / "checkpoint.pt").stat().st_mtime_ns
    study.main(args)  # everything is done: nothing is retrained
    assert (out / "runs" / "sie-s0" / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert json.loads((out / "study.json").read_text()) == records


def test_every_row_is_a_valid_configuration_with_a_distinct_slug() -> None:
    from sie.config import resolve_config

    study = _study_module()
    base = resolve_config("cpu")
    rows = [*study.ENTRIES, *study.ABLATIONS]
    for label, method, overrides in rows:
        cfg = study.entry_config(base, method, overrides, seed=3)
        assert cfg.model.method == method and cfg.train.seed == 3, label
    slugs = [study.slug(label) for label, _, _ in rows]
    assert len(set(slugs)) == len(slugs)
    assert study.slug("SimCLR + AugSelf") == "simclr-augself" and study.slug("SIE, lr 2e-3") == "sie-lr-2e-3"


def test_tables_only_trains_nothing(tmp_path: Path) -> None:
    study = _study_module()
    out = tmp_path / "study"
    args = [
        "--out", str(out), "--set", "render.classes=2", "render.objects_per_class=5", "render.views=4",
        "train.batch_size=4", "model.mlp=16-16",
        "--budgets", "1", "--seeds", "0", "--only", "sie", "--calibration-steps", "1", "--no-report",
    ]  # fmt: skip
    study.main([*args, "--calibrate-only"])
    study.main([*args, "--tables-only"])
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())
    assert json.loads((out / "study_table.json").read_text()) == {"1min": []}
