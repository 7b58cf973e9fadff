"""Fixtures of the method tests."""

from __future__ import annotations

import pytest
from tests.methods.plain import StandInBackbone, one_intra_op_thread

single_thread = pytest.fixture(autouse=True)(one_intra_op_thread)


@pytest.fixture
def stand_in_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Methods built in this test get a :class:`StandInBackbone` instead of a ResNet-18."""
    monkeypatch.setattr(
        "sie.methods.base.build_backbone", lambda arch, small_stem=False, width=0: StandInBackbone()
    )
