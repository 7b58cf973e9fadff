"""`sie train --resume --data` on a dataset drawn again under the same object ids.

The dataset identity covered the split files only, so images of another size (or another camera) in
the same place were accepted as the data the run trained on. Now the resume is refused, naming both
identities, unless --allow-config-change, which records the change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.helpers.tiny_dataset import write_tiny_dataset

from sie.cli import main

ARGS = ["--method", "sie", "--preset", "cpu-small", "--resolution", "32", "--batch-size", "8",
        "--precision", "fp32", "--set", "train.deterministic=true", "--set", "model.mlp=64-64-64",
        "--set", "data.num_workers=0"]  # fmt: skip


def test_resume_on_data_drawn_again_is_a_change(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_dataset, data)
    assert main(["train", "--data", str(data), "--out", str(run), *ARGS, "--max-steps", "1"]) == 0
    trained_on = json.loads((run / "run.json").read_text())["manifest_hash"]
    assert main(["train", "--out", str(run), "--resume", "--data", str(data), "--max-steps", "2"]) == 0
    shutil.rmtree(data)
    write_tiny_dataset(data, size=48)  # the same objects, split files and latents; other images
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--data", str(data), "--max-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "is not the one this run trained on" in err and trained_on in err
    assert json.loads((run / "run.json").read_text())["step"] == 2  # nothing trained
    resume = ["train", "--out", str(run), "--resume", "--data", str(data), "--max-steps", "3"]
    assert main([*resume, "--allow-config-change"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["manifest_hash"] != trained_on and info["step"] == 3
    assert "data.manifest_hash" in json.dumps(info)  # the change is recorded


def test_a_run_of_an_older_sie_is_told_why_its_identity_does_not_compare(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *ARGS, "--max-steps", "1"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["dataset_identity_version"] >= 2
    # What an older sie wrote: no identity version, a hash of the split files only.
    del info["dataset_identity_version"]
    info["manifest_hash"] = "0123456789abcdef0123456789abcdef"
    (run / "run.json").write_text(json.dumps(info))
    capsys.readouterr()
    resume = ["train", "--out", str(run), "--resume", "--data", str(tiny_dataset), "--max-steps", "2"]
    assert main(resume) == 2
    assert "holds a dataset identity of an older sie (split files only)" in capsys.readouterr().err
    assert main([*resume, "--allow-config-change"]) == 0
