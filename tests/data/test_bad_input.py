"""Every bad-input case: reported with the exact path and what was expected; --skip-bad excludes and counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sie.cli import main
from sie.data import make_train_loader, open_split
from sie.data.check import check_dataset
from sie.errors import UsageError


def _obj(root: Path, split: str = "train", index: int = 0) -> Path:
    return root / str(np.load(root / f"{split}_images.npy")[index]).strip("/")


def _corrupt_middle(path: Path) -> None:
    """Keep the JPEG start/end markers, destroy the data in between (found only by decoding)."""
    data = path.read_bytes()
    path.write_bytes(data[:2] + b"\x00" * (len(data) - 4) + data[-2:])


def _check_cli(root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["data", "check", str(root), "--quiet", "--workers", "1", *extra])
    return code, capsys.readouterr().out


def test_clean_dataset_checks_clean(tiny_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check_cli(tiny_dataset, capsys)
    assert code == 0 and "no problems found" in out and "train 9 objects" in out


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("missing image", "missing image"),
        ("missing latent", "missing latent"),
        ("wrong latent length", "latent of wrong length"),
        ("missing object", "split entry not found on disk"),
        ("label mismatch", "label disagrees with synset order"),
        ("extra view", "unexpected view file"),
    ],
)
def test_structural_problems_fail_fast_or_are_skipped(
    dataset_copy: Path, capsys: pytest.CaptureFixture[str], case: str, kind: str
) -> None:
    obj = _obj(dataset_copy, index=1)
    path = {
        "missing image": obj / "image_3.jpg",
        "missing latent": obj / "latent_2.npy",
        "wrong latent length": obj / "latent_2.npy",
        "missing object": obj,
        "label mismatch": dataset_copy / "train_labels.npy",
        "extra view": obj / "image_5.jpg",
    }[case]
    if case in ("missing image", "missing latent"):
        path.unlink()
    elif case == "wrong latent length":
        np.save(path, np.zeros(6))
    elif case == "missing object":
        obj.rename(dataset_copy.parent / "elsewhere")  # out of the dataset: inside, it would be unlisted
    elif case == "label mismatch":
        labels = np.load(path)
        labels[1] = 2
        np.save(path, labels)
    else:
        path.write_bytes((obj / "image_0.jpg").read_bytes())
    with pytest.raises(UsageError) as err:
        open_split(dataset_copy, "train")
    assert f"{path}: {kind}" in str(err.value) and "--skip-bad" in str(err.value)
    source = open_split(dataset_copy, "train", skip_bad=True)
    assert source.num_objects == 8 and obj.name not in "".join(source.object_ids)
    assert len(source.excluded) == 1 and source.excluded[0].path == path
    code, out = _check_cli(dataset_copy, capsys)
    assert code == 1 and f"{path}: {kind}:" in out and "1 problem(s) in 1 object(s)" in out
    code, out = _check_cli(dataset_copy, capsys, "--skip-bad")
    assert code == 0 and "would be excluded (train 1, val 0)" in out


@pytest.mark.parametrize("case", ["garbage", "truncated"])
def test_corrupt_jpeg(dataset_copy: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    obj = _obj(dataset_copy, index=4)
    path = obj / "image_2.jpg"
    if case == "garbage":
        path.write_bytes(b"this is not a jpeg")
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code, out = _check_cli(dataset_copy, capsys)
    assert code == 1 and f"{path}: corrupt image:" in out and "1 problem(s)" in out
    # The fast open-time scan skips it with --skip-bad (JPEG markers) ...
    assert open_split(dataset_copy, "train", skip_bad=True).num_objects == 8
    # ... and without it, reading the file stops with its path (never a silent drop).
    source = open_split(dataset_copy, "train")
    with pytest.raises(UsageError, match=f"{path}: corrupt image"):
        source.read_views(4, [2])
    loader = make_train_loader(source, batch_size_per_rank=9, drop_last=False, views_per_sample=5)
    with pytest.raises(UsageError, match="corrupt image"):
        list(loader)


def test_corrupt_inside_jpeg_found_by_check(dataset_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _obj(dataset_copy, "val", 0) / "image_1.jpg"
    _corrupt_middle(path)
    code, out = _check_cli(dataset_copy, capsys)
    assert code == 1 and f"{path}: corrupt image:" in out


def test_image_of_another_size(dataset_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    path = _obj(dataset_copy, index=0) / "image_0.jpg"
    Image.new("RGB", (16, 16)).save(path)
    # image_0 of the first object also sets the expected size: use a later object
    path2 = _obj(dataset_copy, index=3) / "image_1.jpg"
    Image.new("RGB", (20, 32)).save(path2)
    code, out = _check_cli(dataset_copy, capsys)
    assert code == 1 and f"{path2}: image of unexpected size: 20x32 px; expected" in out


def test_labels_and_split_of_different_lengths(
    dataset_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = dataset_copy / "train_labels.npy"
    np.save(labels, np.load(labels)[:-1])
    with pytest.raises(
        UsageError, match=r"train_labels\.npy: labels and split of different lengths: 8 labels"
    ):
        open_split(dataset_copy, "train", skip_bad=True)  # not an object problem: cannot be skipped
    code, out = _check_cli(dataset_copy, capsys, "--skip-bad")
    assert code == 1 and "labels and split of different lengths" in out and "cannot fix" in out


def test_object_in_two_splits(dataset_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = np.load(dataset_copy / "train_images.npy")
    val = np.load(dataset_copy / "val_images.npy")
    val[0] = train[0]
    np.save(dataset_copy / "val_images.npy", val)
    code, out = _check_cli(dataset_copy, capsys)
    assert code == 1 and "object listed twice" in out and "also entry 0 of split 'train'" in out


def test_check_of_missing_directory(tmp_path: Path) -> None:
    report = check_dataset(tmp_path / "none", progress=False)
    assert len(report.problems) == 1 and not report.usable_with_skip_bad
