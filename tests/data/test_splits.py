"""Reading the 3DIEBench layout: split files, list splits, labels, classes, views read from disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.helpers.tiny_dataset import tiny_synsets, write_tiny_dataset

from sie.data import open_split
from sie.data.raw import RawSource
from sie.errors import UsageError


def test_reference_split_files(tiny_dataset: Path) -> None:
    source = open_split(tiny_dataset, "train")
    assert isinstance(source, RawSource)
    entries = np.load(tiny_dataset / "train_images.npy")
    # '/SYNSET/OBJ/' -> 'SYNSET/OBJ' (the reference strips the leading slash: root / entry[1:])
    assert source.object_ids == [e[1:-1] for e in entries]
    assert source.num_objects == 9 and len(source) == 9
    assert source.labels.dtype == np.int64
    np.testing.assert_array_equal(source.labels, np.load(tiny_dataset / "train_labels.npy"))
    assert source.class_names == tiny_synsets(3)
    assert source.views_per_object == 5 and source.latent_size == 7 and source.image_size == (32, 32)
    views = source.read_views(2, [4, 0])
    assert views.shape == (2, 3, 32, 32) and views.dtype.is_floating_point is False
    obj_dir = tiny_dataset / source.object_ids[2]
    np.testing.assert_array_equal(source.latents[2, 4], np.load(obj_dir / "latent_4.npy"))
    np.testing.assert_array_equal(source.read_latents(2, [4]), source.latents[2, [4]])
    val = open_split(tiny_dataset, "val")
    assert val.num_objects == 3 and val.class_names == source.class_names
    assert val.manifest_hash != source.manifest_hash
    assert open_split(tiny_dataset, "train").manifest_hash == source.manifest_hash


def test_labels_are_sorted_synset_index_and_file_order_is_kept(tmp_path: Path) -> None:
    root = write_tiny_dataset(tmp_path / "d", classes=3, objects_per_class=2, views=2)
    entries = np.load(root / "train_images.npy")
    labels = np.load(root / "train_labels.npy")
    order = np.array([2, 0, 1])  # a split file in another order, labels following it
    np.save(root / "train_images.npy", entries[order])
    np.save(root / "train_labels.npy", labels[order])
    source = open_split(root, "train")
    assert source.object_ids == [e.strip("/") for e in entries[order]]
    expected = [tiny_synsets(3).index(e.strip("/").split("/")[0]) for e in entries[order]]
    assert source.labels.tolist() == expected


@pytest.mark.parametrize("suffix", [".txt", ".npy"])
def test_split_as_a_list_of_ids(tiny_dataset: Path, tmp_path: Path, suffix: str) -> None:
    entries = [e.strip("/") for e in np.load(tiny_dataset / "val_images.npy")]
    ids = [entries[2], entries[0]]
    list_file = tmp_path / f"mine{suffix}"
    if suffix == ".txt":
        list_file.write_text(f"# my split\n{ids[0]}\n\n/{ids[1]}/\n")
    else:
        np.save(list_file, np.array(ids))
    source = open_split(tiny_dataset, str(list_file))
    assert source.split == "mine" and source.object_ids == ids
    # no labels file: label = index of the synset in sorted order
    assert source.labels.tolist() == [tiny_synsets(3).index(i.split("/")[0]) for i in ids]
    assert source.class_names == tiny_synsets(3)


def test_views_per_object_read_from_disk(tmp_path: Path) -> None:
    root = write_tiny_dataset(
        tmp_path / "d", classes=2, objects_per_class=2, views=3, latent_size=10, val_fraction=0.5
    )
    source = open_split(root, "train")
    assert source.views_per_object == 3 and source.latent_size == 10
    assert source.latents.shape == (2, 3, 10)


def test_unknown_split_and_missing_root(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"test_images\.npy.*splits found: train, val"):
        open_split(tiny_dataset, "test")
    with pytest.raises(UsageError, match="no such dataset directory"):
        open_split(tmp_path / "nowhere", "train")
