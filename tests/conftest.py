"""Shared pytest fixtures for the whole suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Make ``tests.helpers`` importable however pytest is started (``pytest``, ``python -m pytest``, a subdir).
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.helpers.tiny_dataset import write_tiny_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a 3DIEBench-layout dataset: 3 classes x 4 objects x 5 views, 32 px (train 9, val 3 objects).

    Session-scoped and shared: tests must not modify it (copy it first, e.g. with ``shutil.copytree``).
    """
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny3diebench"))
