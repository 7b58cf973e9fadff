"""sie.eval.report on hand-written results (two runs, one without a predictor)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.eval.results_files import record, write_results

from sie.checkpoint import checkpoint_hash
from sie.cli import main
from sie.config import PAPER, config_to_dict
from sie.errors import UsageError
from sie.eval import figure_data, report
from sie.eval.protocol import INDEPENDENT_PRE_NOTE
from sie.eval.run import summarise
from sie.eval.run_results import load_run
from sie.eval.verdict import online_rotation_floor


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


def test_a_run_trained_after_its_evaluation_is_reported_as_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: `sie report` showed the old evaluation of a run trained further since, silently. The
    report still covers every run (one stale run must not sink a comparison) but says so, naming both
    checkpoint hashes, on stderr, at the top of the report, in the table and in the run's section."""
    current = write_run(tmp_path, "run-vicreg", "vicreg", 0.8, with_predictor=False)
    (current / "checkpoint.pt").write_bytes(b"weights that were evaluated")
    results = json.loads((current / "eval" / "results.json").read_text())
    results["checkpoint_hash"] = checkpoint_hash(current / "checkpoint.pt")
    (current / "eval" / "results.json").write_text(json.dumps(results))
    stale = write_run(tmp_path, "run-sie", "sie", 0.6, with_predictor=True)  # evaluated 0123456789abcdef
    (stale / "checkpoint.pt").write_bytes(b"weights trained further after the evaluation")
    now = checkpoint_hash(stale / "checkpoint.pt")
    copied = write_run(tmp_path, "run-copied", "simclr", 0.5, with_predictor=False)  # no checkpoint.pt
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["report", str(stale), str(current), str(copied), "--out", str(out)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "stale evaluation of sie (run-sie)" in warnings[0]
    assert f"evaluated checkpoint 0123456789abcdef, but {stale / 'checkpoint.pt'} is now {now}" in warnings[0]
    md = (out / "report.md").read_text()
    assert md.splitlines()[2].startswith("> **Warning:** stale evaluation of sie (run-sie)")
    assert md.count("**Warning:**") == 1 and now in md.splitlines()[2]
    assert list(table_rows(md)) == ["sie (run-sie) (stale)", "vicreg (run-vicreg)", "simclr (run-copied)",
                                    "chance level"]  # fmt: skip
    assert "## Run sie (run-sie) (stale)" in md
    assert f"checkpoint evaluated: 0123456789abcdef; checkpoint.pt now: {now} (stale evaluation" in md
    assert (
        "<p class='warn'><b>Warning:</b> stale evaluation of sie (run-sie)"
        in (out / "report.html").read_text()
    )


def table_rows(md: str) -> dict[str, dict[str, str]]:
    """The main table's cells by row label and column title."""
    lines = [line for line in md.split("## Run")[0].splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return rows


def test_bold_only_where_a_value_beats_its_chance_level_in_the_right_direction(tmp_path: Path) -> None:
    def run(name: str, top1: float, rot: float, pre: float, colour_inv: float, rank: float) -> Path:
        return write_results(tmp_path, name, [
            record("top1", "classification", "inv", "val", top1, chance=0.10),
            record("r2", "rotation", "equi", "val", rot, chance=0.21),
            record("r2", "colour", "inv", "val", colour_inv, chance=0.0),
            record("PRE", "retrieval", "embedding", "val-all", pre, seed=None, chance=0.56),
            record("rankme", "rank", "full", "val", rank, seed=None, chance=None),
        ])  # fmt: skip

    # Both at chance: nothing is "best". Rotation R² 0.25 is above the floor (0.21), but within the
    # verdict's margin (0.05): at chance, not bold.
    a = run("a", top1=0.10, rot=0.20, pre=0.60, colour_inv=0.30, rank=50)
    b = run("b", top1=0.09, rot=0.25, pre=0.58, colour_inv=0.10, rank=80)
    md, _ = report.write_report([a, b], tmp_path / "out-chance")
    rows = table_rows(md.read_text())
    assert not any("**" in cell for row in rows.values() for cell in row.values())
    assert rows["sie (b)"]["Top-1 inv (%)"] == "9.0"  # 9% < 10% chance
    assert rows["sie (b)"]["PRE ↓"] == "0.580"  # lower than a's, but worse than doing nothing (0.56)
    assert rows["sie (b)"]["Colour R² inv ↓"] == "0.100"  # lowest, but the inv part learned no classes
    assert rows["sie (b)"]["RankMe full"] == "80.000"  # no chance level, no bold
    # Above chance: the best in each column's direction is bold, PRE and colour R² inv being lower-is-better.
    c = run("c", top1=0.60, rot=0.50, pre=0.40, colour_inv=0.20, rank=50)
    d = run("d", top1=0.70, rot=0.40, pre=0.45, colour_inv=0.05, rank=80)
    md, html_path = report.write_report([a, c, d], tmp_path / "out-above")
    rows = table_rows(md.read_text())
    assert rows["sie (d)"]["Top-1 inv (%)"] == "**70.0**" and rows["sie (c)"]["Top-1 inv (%)"] == "60.0"
    assert rows["sie (c)"]["Rot. R² equi"] == "**0.500**"
    assert rows["sie (c)"]["PRE ↓"] == "**0.400**" and rows["sie (d)"]["PRE ↓"] == "0.450"
    assert rows["sie (d)"]["Colour R² inv ↓"] == "**0.050**" and rows["sie (c)"]["Colour R² inv ↓"] == "0.200"
    # a's colour R² inv (0.30) is not the lowest; its inv part is at chance anyway.
    assert rows["sie (a)"]["Colour R² inv ↓"] == "0.300"
    assert "<b>0.050</b>" in html_path.read_text()


def test_old_results_are_restated_pre_bar_and_trivial_hits(tmp_path: Path) -> None:
    # A results.json written before the do-nothing bar: PRE chance = independent retrieval (0.627), and
    # H@5/H@10 rows for 5 views per object.
    run = write_results(tmp_path, "old", [
        record("MRR", "retrieval", "embedding", "val-val", 0.5, seed=None, chance=0.457),
        record("H@1", "retrieval", "embedding", "val-val", 0.3, seed=None, chance=0.2),
        record("H@5", "retrieval", "embedding", "val-val", 1.0, seed=None, chance=1.0),
        record("H@10", "retrieval", "embedding", "val-val", 1.0, seed=None, chance=1.0),
        record("PRE", "retrieval", "embedding", "val-all", 0.55, seed=None, chance=0.627,
               note=INDEPENDENT_PRE_NOTE),
    ], views=5)  # fmt: skip
    loaded = load_run(run)
    metrics = {s["metric"]: s for s in loaded.results["summary"]}
    assert set(metrics) == {"MRR", "H@1", "PRE"}
    assert metrics["PRE"]["chance"] == pytest.approx(0.627 * 4 / 5)
    assert any("PRE chance restated" in n for n in loaded.results["notes"])
    md, _ = report.write_report([run], tmp_path / "out")
    text = md.read_text()
    assert "H@5" not in text.split("## Run")[0] and "PRE chance restated" in text
    assert "0.550 vs 0.502 for the do-nothing predictor: worse than doing nothing" in text
    # A new results.json (do-nothing note) is left as it is.
    fresh = write_results(tmp_path, "new", [
        record("PRE", "retrieval", "embedding", "val-all", 0.55, seed=None, chance=0.5)], views=5)  # fmt: skip
    assert load_run(fresh).results["summary"][0]["chance"] == 0.5


def test_online_rotation_floor_and_orbit_references_are_drawn(tmp_path: Path) -> None:
    cfg = config_to_dict(PAPER)
    run = write_results(tmp_path, "online", [
        record("r2", "rotation", "equi", "val", 0.3, chance=0.211)], run_config=cfg)  # fmt: skip
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 1.0, "probe/rot_r2_equi": 0.1 * s}) + "\n" for s in range(4))
    )
    loaded = load_run(run)
    assert online_rotation_floor(loaded) == ("constant predictor (eval chance level)", 0.211)
    canonical = json.loads(json.dumps(cfg))
    canonical["data"]["canonical_quaternion"] = True
    loaded.results["run_config"] = canonical  # the online target is canonical: the simulated floor
    text, value = online_rotation_floor(loaded) or ("", 0.0)
    assert "canonical" in text and value == pytest.approx(0.243, abs=0.005)
    rng = np.random.default_rng(0)
    figure_data.save_figure_data(run / "eval" / "figures.npz", {
        "orbit/equi/angles": rng.uniform(-3, 3, (40, 3)), "orbit/equi/errors": rng.uniform(0, 90, 40),
        "orbit/predictor/angles": rng.uniform(-3, 3, (40, 3)), "orbit/predictor/errors": rng.uniform(0, 90, 40),
        "orbit/reference/constant": np.array(71.5), "orbit/reference/do_nothing": np.array(88.0),
    })  # fmt: skip
    drawn: dict[str, object] = {}
    original_curves, original_orbits = report.figures.training_curves, report.figures.error_along_orbits

    def spy_curves(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        drawn["curves"] = kwargs.get("references")
        return original_curves(*args, **kwargs)  # type: ignore[arg-type]

    def spy_orbits(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        drawn["orbits"] = kwargs.get("references")
        return original_orbits(*args, **kwargs)  # type: ignore[arg-type]

    mp = pytest.MonkeyPatch()
    mp.setattr(report.figures, "training_curves", spy_curves)
    mp.setattr(report.figures, "error_along_orbits", spy_orbits)
    try:
        md, _ = report.write_report([run], tmp_path / "out")
    finally:
        mp.undo()
    assert drawn["curves"] == {"probe/rot_r2_equi": [("constant predictor (eval chance level) 0.211", 0.211)]}
    assert drawn["orbits"] == {"constant predictor (probes)": 71.5, "do-nothing predictor (retrieval)": 88.0}
    assert "constant-predictor floor" in md.read_text() and "Horizontal lines" in md.read_text()
