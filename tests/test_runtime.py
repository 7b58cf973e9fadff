"""Seeding, device/precision and rank-0 logging helpers."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from sie.device import autocast, resolve_device, resolve_precision
from sie.errors import UsageError
from sie.log import get_logger, is_main_process, setup_logging
from sie.seeding import derive_seed, seed_everything


def test_seed_everything_makes_all_generators_repeat() -> None:
    seed_everything(123)
    first = (random.random(), float(np.random.rand()), float(torch.rand(())))
    seed_everything(123)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == first


def test_derive_seed_is_stable_distinct_and_in_range() -> None:
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    # Pinned value: an accidental change of the derivation would silently change every view draw.
    assert derive_seed(0, 1, 2) == 3662037204992188296
    assert derive_seed(0, 1, 2) == derive_seed("0", "1", "2")
    seeds = {derive_seed(7, epoch, index) for epoch in range(10) for index in range(100)}
    assert len(seeds) == 1000
    assert all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(1, 23) != derive_seed(12, 3)


def test_resolve_device_cpu_and_cuda_refusal() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(UsageError):
        resolve_device("tpu")


def test_precision_choices_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu).autocast_dtype is None
    bf16 = resolve_precision("bf16", cpu)
    assert bf16.autocast_dtype == torch.bfloat16 and not bf16.needs_grad_scaler
    with pytest.raises(UsageError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with autocast(bf16, cpu):
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16
    with autocast(resolve_precision("fp32", cpu), cpu):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32


def test_logging_only_on_rank_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(logging.INFO)
    log = get_logger("test")
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    log.info("hidden on rank 1")
    monkeypatch.setenv("RANK", "0")
    log.info("shown on rank 0")
    err = capsys.readouterr().err
    assert "shown on rank 0" in err and "hidden on rank 1" not in err
