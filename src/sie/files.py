"""File plumbing shared by every stage: atomic writes and content hashes.

A file another process (or a resumed run) may read is never written in place: it is written to a
temporary file in the same directory (``DIR/.NAME.<random>.tmp``) and renamed over ``NAME``, so a reader
sees the old file or the new one, never half of one, and a failed write leaves the old one intact.
``durable=True`` (the default) also fsyncs the file and the directory, so the rename survives a power
loss; bulk writers of many small files (render markers) turn it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "file_sha256"]


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, *, durable: bool = True) -> Iterator[io.BufferedWriter]:
    """Open a temporary file next to ``path`` for binary writing; rename it over ``path`` on success.

    On any exception the temporary file is removed, ``path`` is left exactly as it was, and the
    exception propagates. The parent directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        _fsync_directory(path.parent)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`); return ``path``."""
    with atomic_write(path, durable=durable) as handle:
        handle.write(text.encode())
    return Path(path)


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
