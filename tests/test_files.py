"""The shared file plumbing: atomic writes keep the old file on failure and leave no temporary file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sie.files import atomic_write, atomic_write_text, file_sha256


@pytest.mark.parametrize("durable", [True, False])
def test_atomic_write_replaces_the_file_whole_or_not_at_all(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "sub" / "a.json"
    assert atomic_write_text(path, "old", durable=durable) == path and path.read_text() == "old"
    with pytest.raises(RuntimeError, match="boom"), atomic_write(path, durable=durable) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("boom")
    assert path.read_text() == "old"  # the failed write changed nothing
    atomic_write_text(path, "new", durable=durable)
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]  # no temporary file left


def test_file_sha256_reads_in_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f", chunk=1000) == hashlib.sha256(data).hexdigest()
