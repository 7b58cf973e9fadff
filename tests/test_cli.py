"""The `sie` command: help, exit codes, one-line errors, --debug tracebacks; the console script itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sie import __version__
from sie.cli import build_parser, main


def test_help_lists_registered_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "version" in out and "config" in out
    assert "Exit codes" in out


def test_every_subcommand_has_help_with_defaults() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, subparser in sub.choices.items():  # type: ignore[union-attr]
        text = subparser.format_help()
        assert text.startswith("usage: sie " + name), name


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert f"sie {__version__}" in out and "torch" in out


def test_config_show_prints_resolved_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--preset", "cpu-small", "--set", "train.epochs=7"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["train"]["epochs"] == 7 and data["data"]["resolution"] == 64


def test_config_keys_lists_units(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "keys"]) == 0
    out = capsys.readouterr().out
    assert "data.resolution = 256 [px]" in out and "model.sim_coeff" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["config", "show", "--set", "model.sim_cof=3"], "did you mean 'model.sim_coeff'"),
        (["config", "show", "--set", "model.equi=600"], "model.equi=600 must be in [0, 512)"),
        (["config", "show", "--preset", "huge"], "unknown preset 'huge'"),
        (["config", "show", "--config", "/nonexistent/c.yaml"], "no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2_no_traceback(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_debug_shows_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "config", "show", "--set", "model.equi=600"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_unknown_subcommand_is_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2


def test_console_script_runs(tmp_path: Path) -> None:
    exe = shutil.which("sie", path=str(Path(sys.executable).parent))
    assert exe is not None, "the `sie` console script is not installed next to this Python"
    done = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and f"sie {__version__}" in done.stdout
    bad = subprocess.run([exe, "config", "show", "--set", "x=1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown key 'x'" in bad.stderr


def test_argparse_takes_no_abbreviations_and_each_command_reports_its_own_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--epoch", "2", "--out", "run"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.splitlines()[0].startswith("usage: sie train")  # the subcommand's usage, not sie's
    assert "sie train: error: unrecognized arguments: --epoch 2" in err


def test_help_reads_like_the_pipeline_and_shows_only_meaningful_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if re.match(r"    \w", line)]
    assert listed[:7] == ["render", "data", "pack", "train", "eval", "report", "demo"]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: [])" not in text
    assert "(default: paper)" in text
    with pytest.raises(SystemExit):
        main(["render", "--help"])
    assert "(default: small)" in capsys.readouterr().out  # the full benchmark only when named


def test_durations_read_in_hours_and_minutes() -> None:
    from sie.log import format_duration

    assert format_duration(45) == "45 s"
    assert format_duration(200) == "3 min 20 s"
    assert format_duration(70950) == "19 h 42 min"
    assert format_duration(3 * 86400 + 4 * 3600 + 5) == "3 d 4 h"
    assert format_duration(float("nan")) == "unknown"
