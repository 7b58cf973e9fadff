"""``sie data check`` on broken datasets it used to call clean (issue 15): latent values and dtype,
grayscale JPEGs, objects in no split, a missing val split, an unfinished render, and a stray view."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.helpers.tiny_dataset import write_tiny_dataset

from sie.cli import main
from sie.data.check import check_dataset, latent_bounds


def _obj(root: Path, split: str = "train", index: int = 0) -> Path:
    return root / str(np.load(root / f"{split}_images.npy")[index]).strip("/")


def _check(root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["data", "check", str(root), "--quiet", "--workers", "1", *extra])
    return code, capsys.readouterr().out


def _only_problem(out: str) -> str:
    lines = [line for line in out.splitlines() if ": " in line and "problem(s)" not in line]
    assert len(lines) == 1, out
    return lines[0]


@pytest.mark.parametrize(
    ("entry", "value", "expected"),
    [
        (0, math.nan, "rot_x is nan; expected a finite number"),
        (4, math.inf, "spot_theta is inf; expected a finite number"),
        (3, 1.5, "floor_hue=1.5 is outside [0, 1] (the factors' domains)"),
        (5, -0.25, "spot_phi=-0.25 is outside [0, 6.28319] (the factors' domains)"),
        (1, 4.0, "rot_y=4 is outside [-3.14159, 3.14159] (the factors' domains)"),
    ],
)
def test_latent_values_that_are_not_finite_or_out_of_range(
    dataset_copy: Path, capsys: pytest.CaptureFixture[str], entry: int, value: float, expected: str
) -> None:
    path = _obj(dataset_copy, index=2) / "latent_1.npy"
    latent = np.load(path)
    latent[entry] = value
    np.save(path, latent)
    code, out = _check(dataset_copy, capsys)
    assert code == 1 and _only_problem(out) == f"{path}: latent value out of range: {expected}"
    code, out = _check(dataset_copy, capsys, "--skip-bad")
    assert code == 0 and "would be excluded (train 1, val 0)" in out


def test_latent_ranges_come_from_the_render_config(
    dataset_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a dataset.json of sie render, the sampling ranges it records are the bounds."""
    config = {"rotation_range": [-2.0, 2.0], "spot_theta_range": [0.0, 0.8], "variant": "base"}
    manifest = {"status": "complete", "views_per_object": 5, "config": config}
    (dataset_copy / "dataset.json").write_text(json.dumps(manifest))
    code, out = _check(dataset_copy, capsys)
    assert code == 0 and "no problems found" in out  # the tiny dataset samples inside these ranges
    path = _obj(dataset_copy, "val", 0) / "latent_4.npy"
    latent = np.load(path)
    latent[4] = 0.9
    np.save(path, latent)
    code, out = _check(dataset_copy, capsys)
    expected = "spot_theta=0.9 is outside [0, 0.8] (the render config in dataset.json)"
    assert code == 1 and _only_problem(out) == f"{path}: latent value out of range: {expected}"
    bounds = latent_bounds(7, {"config": {"variant": "OOD", "ood_rotation_range": [1.6, 3.0]}})
    assert bounds.low[:3] == (-3.0, -3.0, -3.0) and bounds.high[:3] == (3.0, 3.0, 3.0)


def test_float32_latents_are_reported(dataset_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _obj(dataset_copy, index=5) / "latent_0.npy"
    np.save(path, np.load(path).astype(np.float32))
    code, out = _check(dataset_copy, capsys)
    expected = "latent not float64: stored as float32; expected float64 (3DIEBench's format)"
    assert code == 1 and _only_problem(out) == f"{path}: {expected}"


def test_grayscale_jpegs_are_reported(dataset_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _obj(dataset_copy, index=3) / "image_2.jpg"
    Image.open(path).convert("L").save(path, quality=95)
    code, out = _check(dataset_copy, capsys)
    expected = "image not RGB: grayscale (PIL mode L); expected an RGB JPEG like the others"
    assert code == 1 and _only_problem(out) == f"{path}: {expected}"


def test_object_folders_in_no_split_are_reported(
    dataset_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    source = _obj(dataset_copy, index=0)
    stray = source.with_name("f" * 32)
    shutil.copytree(source, stray)
    (source.parent / "notes").mkdir()  # a folder without views is not an object
    code, out = _check(dataset_copy, capsys)
    problem = _only_problem(out)
    assert code == 1 and problem.startswith(
        f"{stray}: object in no split: holds views but is in no split file"
    )
    code, out = _check(dataset_copy, capsys, "--skip-bad")
    assert code == 0  # training never reads it


def test_a_missing_val_split_is_reported(dataset_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (dataset_copy / "val_images.npy").unlink()
    (dataset_copy / "val_labels.npy").unlink()
    code, out = _check(dataset_copy, capsys)
    expected = "missing split file: train_images.npy exists but val_images.npy does not; expected both splits"
    assert code == 1 and _only_problem(out) == f"{dataset_copy / 'val_images.npy'}: {expected}"
    assert not check_dataset(dataset_copy, workers=1, progress=False).usable_with_skip_bad


def test_an_empty_dataset_marked_in_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What a failed render left: empty split files and an unfinished manifest."""
    root = tmp_path / "failed"
    root.mkdir()
    (root / "dataset.json").write_text(json.dumps({"status": "in progress", "views_per_object": 2}))
    for split in ("train", "val"):
        np.save(root / f"{split}_images.npy", np.array([], dtype=str))
        np.save(root / f"{split}_labels.npy", np.array([], dtype=np.int64))
    code, out = _check(root, capsys)
    assert code == 1 and "no problems found" not in out
    assert (
        f"{root / 'dataset.json'}: unfinished render: status is 'in progress': the render did not finish"
        in out
    )
    assert f"{root / 'train_images.npy'}: empty split: no entries" in out
    assert f"{root / 'val_images.npy'}: empty split: no entries" in out
    code, out = _check(root, capsys, "--skip-bad")
    assert code == 1


def test_a_stray_view_file_reports_only_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two objects per split, 3 views: one stray image_7.jpg made the image counts tie (4 vs 3), and
    the tie went to 4 views, so every other object had a false "missing image_3" and "latent_3"."""
    root = write_tiny_dataset(tmp_path / "d", classes=2, objects_per_class=2, views=3, val_fraction=0.5)
    obj = _obj(root, index=0)
    stray = obj / "image_7.jpg"
    stray.write_bytes((obj / "image_0.jpg").read_bytes())
    code, out = _check(root, capsys)
    expected = "unexpected view file: other objects have 3 views (0..2)"
    assert code == 1 and _only_problem(out) == f"{stray}: {expected}"


def test_views_per_object_from_the_manifest(dataset_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """dataset.json says 6 views: every object of the 5-view dataset misses view 5."""
    (dataset_copy / "dataset.json").write_text(json.dumps({"status": "complete", "views_per_object": 6}))
    code, out = _check(dataset_copy, capsys)
    assert code == 1 and f"{_obj(dataset_copy, index=0) / 'image_5.jpg'}: missing image" in out
    assert "24 problem(s) in 12 object(s)" in out  # 12 objects x (image_5 + latent_5)
