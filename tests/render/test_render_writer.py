"""ObjectWriter: views written on a background thread, published in one rename, nothing left on failure."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sie.render.writer as writer_module
from sie.render.writer import PARTIAL_DIR, ObjectWriter, object_done


def _views(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8), rng.normal(size=(n, 7))


def test_chunks_written_on_a_thread_appear_together_under_the_final_name(tmp_path: Path) -> None:
    images, latents = _views(5)
    with ThreadPoolExecutor(max_workers=1) as threads:
        writer = ObjectWriter(tmp_path, "03001627/obj", threads=threads)
        writer.add(0, images[:3], latents[:3])
        writer.add(3, images[3:], latents[3:])
        assert not object_done(tmp_path, "03001627/obj")  # invisible until committed
        assert writer.commit()
    folder = tmp_path / "03001627" / "obj"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"image_{v}.jpg" for v in range(5)] + [f"latent_{v}.npy" for v in range(5)]
    )
    for v in range(5):
        np.testing.assert_array_equal(np.load(folder / f"latent_{v}.npy"), latents[v])
        assert Image.open(folder / f"image_{v}.jpg").size == (8, 8)
    assert not list((tmp_path / PARTIAL_DIR).iterdir())


def test_a_failed_background_write_surfaces_at_commit_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, latents = _views(4)
    real_save = np.save

    def save(file: object, arr: object, *args: object, **kwargs: object) -> None:
        if str(file).endswith("latent_2.npy"):
            raise OSError("disk full (simulated)")
        real_save(file, arr, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writer_module.np, "save", save)
    with ThreadPoolExecutor(max_workers=1) as threads:
        writer = ObjectWriter(tmp_path, "c/o", threads=threads)
        writer.add(0, images[:2], latents[:2])
        writer.add(2, images[2:], latents[2:])
        with pytest.raises(OSError, match="disk full"):
            writer.commit()
    assert not (tmp_path / "c").exists()
    assert not list((tmp_path / PARTIAL_DIR).iterdir())
