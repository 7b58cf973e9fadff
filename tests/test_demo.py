"""`sie demo` end to end at its smallest size, re-run reuse, and the refusals before any work."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from sie.cli import main
from sie.demo import DEMO_SIZES, run_demo
from sie.errors import UsageError


def test_demo_runs_end_to_end_and_rerun_reuses_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "tiny", "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "rotation R² (equivariant part)" in printed and "chance" in printed
    assert "report:" in printed and str(out) in printed

    data, run = out / "data", out / "runs" / "sie"
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
    result = run_demo(out, size="tiny", epochs=1)
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
