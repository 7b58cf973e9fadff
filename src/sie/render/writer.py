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
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from sie.files import atomic_write_text

__all__ = [
    "PARTIAL_DIR",
    "STATE_DIR",
    "ObjectWriter",
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


class ObjectWriter:
    """Writes one object's views into ``OUT/.partial/`` on a background thread; :meth:`commit` renames.

    The caller renders views in chunks and hands each chunk to :meth:`add`, which returns at once:
    JPEG encoding and file writes (which release the GIL) overlap the rendering of the next chunk,
    and a slow or busy disk stalls the renderer only at :meth:`commit`. The object stays invisible
    until every file is written and closed, then appears under its final name in one rename.

    Args:
        root: dataset root.
        key: ``'SYNSET/OBJ'``.
        threads: a one-thread executor to write on (shared across objects); None writes inline.
        jpeg_quality: JPEG quality (PIL, 4:2:0 chroma subsampling like OpenCV's default).
        swap_red_blue: store B, G, R in the file's R, G, B (the reference's cv2.imwrite of RGB data; docs/render.md).
    """

    def __init__(
        self,
        root: Path,
        key: str,
        *,
        threads: ThreadPoolExecutor | None = None,
        jpeg_quality: int = 95,
        swap_red_blue: bool = False,
    ) -> None:
        self.final = root / key
        self.jpeg_quality = jpeg_quality
        self.swap_red_blue = swap_red_blue
        self._threads = threads
        self._pending: list[Future[None]] = []
        partial_root = root / PARTIAL_DIR
        partial_root.mkdir(parents=True, exist_ok=True)
        stem = key.replace("/", "__")
        for stale in partial_root.glob(f"{stem}.*"):  # left by a crashed run of this same object
            shutil.rmtree(stale, ignore_errors=True)
        self.tmp = partial_root / f"{stem}.{os.getpid()}"
        self.tmp.mkdir()

    def _write(self, first_view: int, images: np.ndarray, latents: np.ndarray) -> None:
        for offset in range(len(images)):
            v = first_view + offset
            pixels = images[offset][:, :, ::-1] if self.swap_red_blue else images[offset]
            Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(
                self.tmp / f"image_{v}.jpg", format="JPEG", quality=self.jpeg_quality
            )
            np.save(self.tmp / f"latent_{v}.npy", np.asarray(latents[offset], dtype=np.float64))

    def add(self, first_view: int, images: np.ndarray, latents: np.ndarray) -> None:
        """Queue views ``first_view, first_view + 1, ...``: images (n, H, W, 3) uint8, latents (n, L)."""
        if self._threads is None:
            self._write(first_view, images, latents)
        else:
            self._pending.append(self._threads.submit(self._write, first_view, images, latents))

    def _wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()  # re-raises a failed write here, in the caller's thread

    def commit(self) -> bool:
        """Wait for every write, then publish the object; False when another process finished it first."""
        try:
            self._wait()
            self.final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(self.tmp, self.final)
            except OSError:
                if self.final.is_dir():  # finished meanwhile by another process: keep theirs
                    shutil.rmtree(self.tmp, ignore_errors=True)
                    return False
                raise
            return True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the partial object (after its queued writes settle, so none lands after the removal)."""
        for future in self._pending:
            future.cancel()
        for future in self._pending:
            if not future.cancelled():
                future.exception()  # waits; the error itself is the caller's to report
        self._pending = []
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_object(
    root: Path,
    key: str,
    images: np.ndarray,
    latents: np.ndarray,
    *,
    jpeg_quality: int = 95,
    swap_red_blue: bool = False,
) -> bool:
    """Write one object's views atomically, in this thread; False when another process finished it first.

    Args:
        root: dataset root.
        key: ``'SYNSET/OBJ'``.
        images: (V, H, W, 3) uint8 RGB.
        latents: (V, L) float64.
        jpeg_quality: JPEG quality (PIL, 4:2:0 chroma subsampling like OpenCV's default).
        swap_red_blue: store B, G, R in the file's R, G, B (the reference's cv2.imwrite of RGB data; docs/render.md).
    """
    writer = ObjectWriter(root, key, jpeg_quality=jpeg_quality, swap_red_blue=swap_red_blue)
    try:
        writer.add(0, images, latents)
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


def _note_path(root: Path, kind: str, key: str) -> Path:
    return root / STATE_DIR / kind / (key.replace("/", "__") + ".json")


def write_note(root: Path, kind: str, key: str, data: dict[str, str]) -> None:
    """Record a fact about object ``key`` (``kind``: ``skipped``, ``non_watertight``) for the manifest."""
    marker = _note_path(root, kind, key)
    atomic_write_text(marker, json.dumps({"object": key, **data}), durable=False)


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
