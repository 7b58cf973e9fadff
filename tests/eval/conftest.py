"""Fixtures for the evaluation tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_intra_op_thread() -> Iterator[None]:
    """Run each test module here with one torch thread (module fixtures included), then restore it.

    The probes here are tiny (a few thousand multiply-adds per step); with several OpenMP threads on a
    loaded 2-core machine each op waits for busy threads and the tests ran 20-50x slower (measured:
    45 s vs 7.6 s for test_probes.py at load average 5). Numbers do not depend on the thread count.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
