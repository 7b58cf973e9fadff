"""`sie demo` end to end at its smallest size, re-run reuse, and the refusals before any work."""

from __future__ import annotations

import json
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

import sie.demo as demo_module
from sie.cli import main
from sie.demo import DEMO_SIZES, MethodResult, run_demo, summarize
from sie.errors import UsageError

pytestmark = pytest.mark.slow  # end to end; `pytest -m "not slow"` skips it for a quick loop


@pytest.fixture(autouse=True)
def _no_live_memory_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory preflight reads the machine's live free memory; tests never depend on it."""
    monkeypatch.setattr(demo_module, "_available_memory_mb", lambda: None)


def test_demo_runs_end_to_end_and_rerun_reuses_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "tiny", "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "rotation R², equivariant part" in printed and "chance" in printed
    assert "sie and vicreg" in printed  # the method and its invariant baseline, side by side
    assert "report:" in printed and str(out) in printed
    # The plain-words verdict of each run, named once (the run directories are named after the methods).
    assert re.search(r"(^|\s)sie: ", printed) and re.search(r"(^|\s)vicreg: ", printed)
    assert "sie (sie)" not in printed

    data, run = out / "data", out / "runs" / "sie"
    assert (out / "runs" / "vicreg" / "eval" / "results.json").is_file()
    manifest = json.loads((data / "dataset.json").read_text())
    tiny = DEMO_SIZES["tiny"]
    assert manifest["counts"]["images"] == tiny.classes * tiny.objects_per_class * tiny.views
    for name in ("config.yaml", "checkpoint.pt", "backbone.safetensors", "metrics.jsonl"):
        assert (run / name).is_file(), name
    results = json.loads((run / "eval" / "results.json").read_text())
    rotation = [s for s in results["summary"] if s["task"] == "rotation" and s["part"] == "equi"]
    assert rotation and -10 < rotation[0]["mean"] <= 1.0  # a real number from this run, not a constant
    html = (out / "report" / "report.html").read_text()
    assert "<table" in html and "data:image/png;base64," in html

    image = next(data.glob("*/*/image_0.jpg"))
    stamp, checkpoint_stamp = image.stat().st_mtime_ns, (run / "checkpoint.pt").stat().st_mtime_ns
    result = run_demo(out, size="tiny", epochs=1, baseline=None)
    assert image.stat().st_mtime_ns == stamp  # rendered data reused, not redrawn
    assert (run / "checkpoint.pt").stat().st_mtime_ns == checkpoint_stamp  # finished run not retrained
    assert result.report_html.is_file() and result.headline


def test_demo_refuses_when_the_disk_is_too_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10 * 2**20, 9 * 2**20, 2**20))
    with pytest.raises(UsageError, match=r"1 MB free .* needs about \d+ MB; try --size tiny"):
        run_demo(tmp_path / "demo", size="small")
    assert not (tmp_path / "demo").exists()  # refused before any work


def test_demo_rejects_an_unknown_size(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--size 'huge'"):
        run_demo(tmp_path, size="huge")


def test_demo_refuses_low_memory_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_module, "_available_memory_mb", lambda: 100.0)
    with pytest.raises(UsageError, match=r"100 MB of memory available, training needs about \d+ MB"):
        run_demo(tmp_path / "demo", size="small")
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "simclrr"}, r"--method 'simclrr' is not a registered method \(did you mean 'simclr'\?\)"),
        (
            {"baseline": "vicrge"},
            r"--baseline 'vicrge' is not a registered method \(did you mean 'vicreg'\?\)",
        ),
        ({"baseline": "sie"}, r"--baseline 'sie' is the same as --method"),
        ({"epochs": 0}, r"--epochs 0: must be positive"),
    ],
)
def test_demo_checks_names_and_sizes_before_rendering(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        run_demo(tmp_path / "demo", size="tiny", **kwargs)
    assert not (tmp_path / "demo").exists()  # nothing rendered, nothing created


def _fake_run(
    root: Path, method: str, summary: list[tuple[str, str, str, str, float, float, bool]]
) -> MethodResult:
    run_dir = root / method
    (run_dir / "eval").mkdir(parents=True)
    entries = [
        {"task": t, "metric": m, "part": p, "split": s, "mean": v, "std": 0.0, "n": 1, "chance": c,
         "higher_is_better": h}
        for t, m, p, s, v, c, h in summary
    ]  # fmt: skip
    results = {
        "format": "sie.eval.results",
        "method": method,
        "summary": entries,
        "has_predictor": method == "sie",
    }
    (run_dir / "eval" / "results.json").write_text(json.dumps(results))
    return MethodResult(method, run_dir, run_dir / "eval" / "results.json",
                        demo_module._headline(run_dir / "eval" / "results.json"), 1.0)  # fmt: skip


def test_summary_says_what_beats_chance_and_compares_rotation(tmp_path: Path) -> None:
    sie = _fake_run(tmp_path, "sie", [
        ("rotation", "r2", "equi", "val", 0.62, 0.21, True),
        ("classification", "top1", "inv", "val", 0.12, 0.10, True),
        ("retrieval", "PRE", "embedding", "val-all", 0.40, 0.56, False),
    ])  # fmt: skip
    vicreg = _fake_run(tmp_path, "vicreg", [("rotation", "r2", "full", "val", 0.30, 0.21, True)])
    first, second, third = summarize([sie, vicreg]).splitlines()
    assert "rotation R² 0.620 vs constant-predictor floor 0.210: rotation learned" in first
    assert "top-1 12.0% vs chance 10.0%: at chance" in first  # 2 points above chance is not learning
    assert "better than doing nothing" in first
    assert second.startswith("vicreg") and "rotation learned" in second
    assert "sie's equivariant part holds more rotation information than vicreg's whole" in third
    assert "(R² 0.62 vs 0.30)" in third
    flat = _fake_run(tmp_path / "flat", "sie", [("rotation", "r2", "equi", "val", 0.22, 0.21, True)])
    assert "rotation not learned" in summarize([flat])
