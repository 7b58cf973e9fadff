"""The shared tiny-dataset helper writes the exact 3DIEBench layout, deterministically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tests.helpers.tiny_dataset import tiny_synsets, write_tiny_dataset


def test_fixture_layout(tiny_dataset: Path) -> None:
    train = np.load(tiny_dataset / "train_images.npy")
    val = np.load(tiny_dataset / "val_images.npy")
    assert len(train) == 9 and len(val) == 3
    assert np.load(tiny_dataset / "train_labels.npy").dtype == np.int64
    synsets = tiny_synsets(3)
    for entry, label in zip(train, np.load(tiny_dataset / "train_labels.npy"), strict=True):
        assert entry.startswith("/") and entry.endswith("/")
        synset, obj = entry.strip("/").split("/")
        assert synsets.index(synset) == label
        for v in range(5):
            with Image.open(tiny_dataset / synset / obj / f"image_{v}.jpg") as img:
                assert img.size == (32, 32) and img.mode == "RGB"
            lat = np.load(tiny_dataset / synset / obj / f"latent_{v}.npy")
            assert lat.shape == (7,) and lat.dtype == np.float64


def test_deterministic_and_translation_variant(tmp_path: Path) -> None:
    a = write_tiny_dataset(tmp_path / "a", classes=2, objects_per_class=2, views=2, latent_size=10)
    b = write_tiny_dataset(tmp_path / "b", classes=2, objects_per_class=2, views=2, latent_size=10)
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    lat = np.load(next(a.rglob("latent_0.npy")))
    assert lat.shape == (10,)


def test_images_follow_latents(tmp_path: Path) -> None:
    """Background = floor hue: two views with different floor hues have different corner colours."""
    root = write_tiny_dataset(tmp_path, classes=1, objects_per_class=1, views=4, size=32)
    obj_dir = next(p for p in root.rglob("image_0.jpg")).parent
    hues = [float(np.load(obj_dir / f"latent_{v}.npy")[3]) for v in range(4)]
    corners = [np.asarray(Image.open(obj_dir / f"image_{v}.jpg"))[0, 0].astype(int) for v in range(4)]
    i, j = int(np.argmin(hues)), int(np.argmax(hues))
    assert hues[j] - hues[i] > 0.1  # true for this seed; makes the next line meaningful
    assert np.abs(corners[i] - corners[j]).sum() > 20
