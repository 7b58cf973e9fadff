"""sie.eval.report on hand-written results (two runs, one without a predictor)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sie.errors import UsageError
from sie.eval import figure_data, report
from sie.eval.run import summarise


def record(
    metric: str, task: str, part: str, split: str, value: float, seed: int | None = 0, chance: float = 0.1
):
    return {"metric": metric, "task": task, "part": part, "split": split, "seed": seed, "value": value,
            "chance": chance, "chance_note": "", "higher_is_better": metric != "PRE", "wall_time_s": 0.1}  # fmt: skip


def write_run(root: Path, name: str, method: str, top1_full: float, with_predictor: bool) -> Path:
    run = root / name
    (run / "eval").mkdir(parents=True)
    records = [
        record("top1", "classification", "full", "val", top1_full, seed=0, chance=0.34),
        record("top1", "classification", "full", "val", top1_full + 0.02, seed=1, chance=0.34),
        record("r2", "rotation", "full", "val", 0.5 + top1_full / 10, chance=0.229),
        record("r2", "colour", "full", "val", 0.9, chance=0.0),
    ]
    if with_predictor:
        records += [
            record("top1", "classification", "inv", "val", 0.7, chance=0.34),
            record("MRR", "retrieval", "embedding", "val-val", 0.4, seed=None, chance=0.09),
            record("H@1", "retrieval", "embedding", "val-val", 0.2, seed=None, chance=0.02),
            record("PRE", "retrieval", "embedding", "val-all", 0.3, seed=None, chance=0.627),
        ]
    results = {
        "format": "sie.eval.results", "version": 1, "run": str(run), "run_name": name, "method": method,
        "has_predictor": with_predictor, "checkpoint_hash": "0123456789abcdef", "preset": "quick",
        "dataset": {"root": "/data", "splits": {"val": {"manifest_hash": "m", "objects": 3, "views": 5}}},
        "config": {"probe_epochs": 20, "probe_seeds": [0, 1], "reference_bn": False}, "device": "cpu",
        "notes": [] if with_predictor else [f"method {method!r} has no predictor: MRR, H@k and PRE are skipped"],
        "wall_time_s": 1.0, "records": records, "summary": summarise(records),
    }  # fmt: skip
    (run / "eval" / "results.json").write_text(json.dumps(results))
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 10 - s, "loss/inv": 1 / (s + 1)}) + "\n" for s in range(5))
    )
    if with_predictor:
        rng = np.random.default_rng(0)
        arrays = {
            "preview/images": rng.integers(0, 255, (2, 3, 16, 16, 3), dtype=np.uint8),
            "preview/labels": np.array(["a", "b"]),
            "orbit/full/angles": rng.uniform(-3, 3, (50, 3)),
            "orbit/full/errors": rng.uniform(0, 90, 50),
            "retrieval/sources": rng.integers(0, 255, (1, 16, 16, 3), dtype=np.uint8),
            "retrieval/targets": rng.integers(0, 255, (1, 2, 16, 16, 3), dtype=np.uint8),
            "retrieval/retrieved": rng.integers(0, 255, (1, 2, 16, 16, 3), dtype=np.uint8),
            "retrieval/correct": np.array([[True, False]]),
            "retrieval/captions": np.array([["10°", "90°"]]),
            **figure_data.steering_arrays(
                0,
                torch.randn(6, 4),
                torch.randn(6, 4),
                torch.linspace(0, 90, 6),
                "angle (degrees)",
                "a sweep",
            ),
        }
        figure_data.save_figure_data(run / "eval" / "figures.npz", arrays)
    return run


def test_report_table_layout_bold_chance_and_self_contained_html(tmp_path: Path) -> None:
    sie_run = write_run(tmp_path, "run-sie", "sie", 0.6, with_predictor=True)
    vicreg_run = write_run(tmp_path, "run-vicreg", "vicreg", 0.8, with_predictor=False)
    md_path, html_path = report.write_report([sie_run, vicreg_run], tmp_path / "out")
    md = md_path.read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == ["Method", "Top-1 inv (%)", "Top-1 full (%)", "Rot. R² full", "Colour R² full", "MRR", "H@1",
                      "PRE ↓"]  # fmt: skip
    rows = {
        r.strip("|").split("|")[0].strip(): [c.strip() for c in r.strip("|").split("|")[1:]]
        for r in table[1:]
    }
    assert list(rows)[:3] == ["sie (run-sie)", "vicreg (run-vicreg)", "chance level"]
    assert rows["sie (run-sie)"][1] == "61.0 ± 1.4"  # mean ± std over the two seeds, in percent
    assert rows["vicreg (run-vicreg)"][1] == "**81.0 ± 1.4**"  # the best top-1 is bold
    assert rows["vicreg (run-vicreg)"][4] == "n/a" and rows["vicreg (run-vicreg)"][0] == "–"
    assert rows["chance level"][1] == "34.0" and rows["chance level"][6] == "0.627"
    assert "has no predictor" in md
    for name in (
        "training_curves",
        "dataset_preview",
        "orbits_run-sie",
        "retrieval_run-sie",
        "steering_run-sie",
    ):
        assert (tmp_path / "out" / "figures" / f"{name}.png").stat().st_size > 2000
        assert f"figures/{name}.png" in md
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 5
    assert not re.search(r"src=['\"](?!data:)", page)  # nothing loaded from outside the file
    assert "<b>81.0 ± 1.4</b>" in page


def test_report_refuses_a_run_without_results(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(UsageError, match=r"no eval/results\.json"):
        report.write_report([tmp_path / "run"], tmp_path / "out")
