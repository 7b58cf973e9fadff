"""`sie train` as a user runs it: SIGTERM mid-run, exit 0 with a resume hint, resume, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sie.checkpoint import load_checkpoint
from sie.cli import main


def _sie(*args: str) -> list[str]:
    return [sys.executable, "-m", "sie", "train", *args]


_ENV = dict(os.environ, OMP_NUM_THREADS="1")  # see conftest.one_torch_thread


def _tiny_flags(data: Path) -> list[str]:
    return [
        "--data",
        str(data),
        "--batch-size",
        "4",
        "--resolution",
        "16",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--set",
        "model.small_stem=true",
        "--set",
        "model.mlp=32-32-32",
        "--set",
        "train.log_every_s=0",
        "--set",
        "data.num_workers=0",
    ]


def _steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def test_sigterm_checkpoints_exits_zero_and_the_run_resumes(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _sie("--method", "vicreg", "--out", str(run), "--epochs", "1000", *_tiny_flags(tiny_dataset)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while not _steps(run):  # wait for the first finished step
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no training step within 120 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    assert f"Resume with: sie train --out {run} --resume" in stderr
    assert stdout.strip() == str(run)
    step = load_checkpoint(run / "checkpoint.pt")["step"]
    assert step >= 1 and _steps(run)[-1] == step
    assert json.loads((run / "run.json").read_text())["status"] == "stopped (signal SIGTERM)"

    # The rest runs the command in this process (no interpreter start-up): same code path.
    assert main(["train", "--out", str(run), "--resume", "--max-steps", str(step + 1)]) == 0
    assert capsys.readouterr().out.strip() == str(run)
    assert _steps(run) == list(range(1, step + 2))
    assert load_checkpoint(run / "checkpoint.pt")["step"] == step + 1

    assert main(["train", "--out", str(run), "--resume", "--epochs", "5"]) == 2
    err = capsys.readouterr().err
    assert "train.epochs: 1000 -> 5" in err and "--allow-config-change" in err


def test_new_run_needs_a_method_and_data(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "a")]) == 2
    assert "--method NAME is required" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--method",
                "sie",
                "--out",
                str(tmp_path / "b"),
                "--device",
                "cpu",
                "--precision",
                "fp32",
            ]
        )
        == 2
    )
    assert "pass --data ROOT" in capsys.readouterr().err
    assert main(["train", "--method", "siee", "--out", str(tmp_path / "c"), *_tiny_flags(tiny_dataset)]) == 2
    assert "did you mean 'sie'" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "d"), "--resume"]) == 2
    assert "has no config.yaml" in capsys.readouterr().err
