"""Fixtures of the nn tests."""

from __future__ import annotations

import pytest
from tests.methods.plain import one_intra_op_thread

single_thread = pytest.fixture(autouse=True)(one_intra_op_thread)
