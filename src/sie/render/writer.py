"""Writing objects in the 3DIEBench layout, atomically, and knowing which are already done.

An object is rendered into ``OUT/.partial/SYNSET__OBJ.PID/`` and renamed to ``OUT/SYNSET/OBJ/``
only once every ``image_{v}.jpg`` and ``latent_{v}.npy`` is written and closed, so an object
directory either holds the complete object or does not exist: an interrupted run never leaves a
half-written object, and a resumed run skips exactly the finished ones. Objects skipped as bad
input (and meshes that are not watertight) get a small JSON note in ``OUT/.render/KIND/`` so that
every shard's findings reach the manifest. (Files are not fsync'ed: that protects against a crashed process, which is what resuming
is for, at no cost; after a power cut, check the last objects with ``sie data check``.)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "PARTIAL_DIR",
    "STATE_DIR",
    "object_done",
    "read_notes",
    "write_note",
    "write_object",
]

PARTIAL_DIR = ".partial"
STATE_DIR = ".render"


def object_done(root: Path, key: str) -> bool:
    """True when ``ROOT/SYNSET/OBJ`` exists (it only ever appears complete)."""
    return (root / key).is_dir()


def write_object(
    root: Path,
    key: str,
    images: np.ndarray,
    latents: np.ndarray,
    *,
    jpeg_quality: int = 95,
    swap_red_blue: bool = False,
) -> bool:
    """Write one object's views atomically; False when another process finished it first.

    Args:
        root: dataset root.
        key: ``'SYNSET/OBJ'``.
        images: (V, H, W, 3) uint8 RGB.
        latents: (V, L) float64.
        jpeg_quality: JPEG quality (PIL, 4:2:0 chroma subsampling like OpenCV's default).
        swap_red_blue: store B, G, R in the file's R, G, B (the reference's cv2 mix-up, sie.md bug 24).
    """
    final = root / key
    partial_root = root / PARTIAL_DIR
    partial_root.mkdir(parents=True, exist_ok=True)
    stem = key.replace("/", "__")
    for stale in partial_root.glob(f"{stem}.*"):  # left by a crashed run of this same object
        shutil.rmtree(stale, ignore_errors=True)
    tmp = partial_root / f"{stem}.{os.getpid()}"
    tmp.mkdir()
    try:
        for v in range(len(images)):
            pixels = images[v][:, :, ::-1] if swap_red_blue else images[v]
            Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(
                tmp / f"image_{v}.jpg", format="JPEG", quality=jpeg_quality
            )
            np.save(tmp / f"latent_{v}.npy", np.asarray(latents[v], dtype=np.float64))
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if final.is_dir():  # finished meanwhile by another process: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            raise
        return True
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _note_path(root: Path, kind: str, key: str) -> Path:
    return root / STATE_DIR / kind / (key.replace("/", "__") + ".json")


def write_note(root: Path, kind: str, key: str, data: dict[str, str]) -> None:
    """Record a fact about object ``key`` (``kind``: ``skipped``, ``non_watertight``) for the manifest."""
    marker = _note_path(root, kind, key)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"object": key, **data}))
    os.replace(tmp, marker)


def read_notes(root: Path, kind: str) -> dict[str, dict[str, str]]:
    """All notes of one kind: ``{'SYNSET/OBJ': {'object': ..., ...}}``."""
    folder = root / STATE_DIR / kind
    out: dict[str, dict[str, str]] = {}
    if folder.is_dir():
        for marker in sorted(folder.glob("*.json")):
            try:
                entry = json.loads(marker.read_text())
            except (OSError, ValueError):
                continue
            out[str(entry["object"])] = entry
    return out
