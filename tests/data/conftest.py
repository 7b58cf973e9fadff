"""Fixtures of the data-layer tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def dataset_copy(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A private, modifiable copy of the session's tiny dataset."""
    return Path(shutil.copytree(tiny_dataset, tmp_path / "dataset"))
