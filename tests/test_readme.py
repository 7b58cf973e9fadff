"""README.md cannot rot: its Python blocks run, and its five-minute tour runs command by command."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end; `pytest -m "not slow"` skips it for a quick loop

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
TOUR = next(
    block for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S) if "sie render tour/" in block
)
SIE = Path(sys.executable).with_name("sie")


def test_readme_has_python_examples() -> None:
    assert PYTHON_BLOCKS, "README.md lost its Python examples"


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(PYTHON_BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "__readme__"})


def test_readme_tour_runs_verbatim(tmp_path: Path) -> None:
    commands = [line.split("#")[0].strip() for line in TOUR.splitlines()]
    commands = [c for c in commands if c]
    assert [shlex.split(c)[1] for c in commands] == ["render", "data", "pack", "train", "eval", "report"]
    for command in commands:
        argv = [str(SIE), *shlex.split(command)[1:]]
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    assert (tmp_path / "tour" / "report" / "report.html").is_file()
    assert (tmp_path / "tour" / "runs" / "sie" / "eval" / "results.json").is_file()
