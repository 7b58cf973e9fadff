"""Optional dependencies are named before any work starts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from sie.cli import main
from sie.errors import UsageError
from sie.extras import require_extra


def test_a_missing_extra_is_named_in_one_line() -> None:
    require_extra("json", "report", "sie report")  # present: nothing happens
    with pytest.raises(
        UsageError,
        match=r"^sie report needs no_such_module_x, which is not installed: pip install 'sie\[report\]'",
    ):
        require_extra("no_such_module_x", "report", "sie report")


def test_report_and_demo_check_matplotlib_before_any_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a)
    )
    assert main(["report", str(tmp_path / "missing-run"), "--out", str(tmp_path / "r")]) == 2
    assert "pip install 'sie[report]'" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "sie demo (its report) needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # nothing rendered


def test_the_package_ships_its_type_marker() -> None:
    import sie

    assert (Path(sie.__file__).parent / "py.typed").is_file()
