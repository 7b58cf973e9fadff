"""The capsule methods' loss terms in sie.losses: by hand and against plain loops."""

from __future__ import annotations

import math

import pytest
import torch

from sie.losses import distribution_cross_entropy, mean_entropy_maximisation, sharpen


def _probabilities(n: int, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, k, generator=gen, dtype=torch.float64), dim=1)


def test_cross_entropy_by_hand_and_against_a_loop() -> None:
    target = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    prediction = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    # row 0: -log 0.5; row 1: -(0.25 + 0.75) log 0.5; mean = log 2 (0 log 0 counts as 0)
    assert float(distribution_cross_entropy(target, prediction)) == pytest.approx(math.log(2))
    t, p = _probabilities(5, 4, 0), _probabilities(5, 4, 1)
    plain = sum(-t[i, j].item() * math.log(p[i, j].item()) for i in range(5) for j in range(4)) / 5
    assert float(distribution_cross_entropy(t, p)) == pytest.approx(plain, rel=1e-12)
    with pytest.raises(ValueError, match="shapes differ"):
        distribution_cross_entropy(t, p[:, :3])


def test_mean_entropy_maximisation_by_hand_and_against_a_loop() -> None:
    # A uniform batch mean costs 0; a collapsed batch (every row on capsule 0) costs log K.
    assert float(mean_entropy_maximisation(torch.eye(3))) == pytest.approx(0.0, abs=1e-7)
    collapsed = torch.tensor([[1.0, 0.0, 0.0]] * 4)
    assert float(mean_entropy_maximisation(collapsed)) == pytest.approx(math.log(3))
    p = _probabilities(6, 5, 2)
    mean = [sum(p[i, j].item() for i in range(6)) / 6 for j in range(5)]
    plain = math.log(5) + sum(m * math.log(m) for m in mean)
    assert float(mean_entropy_maximisation(p)) == pytest.approx(plain, rel=1e-12)


def test_sharpen_by_hand_and_against_a_loop() -> None:
    # p = (0.2, 0.8), T = 0.5: (0.04, 0.64) / 0.68
    out = sharpen(torch.tensor([[0.2, 0.8]]), 0.5)
    torch.testing.assert_close(out, torch.tensor([[0.04 / 0.68, 0.64 / 0.68]]))
    p = _probabilities(3, 4, 3)
    powered = [[p[i, j].item() ** (1 / 0.1) for j in range(4)] for i in range(3)]
    plain = torch.tensor([[v / sum(row) for v in row] for row in powered], dtype=torch.float64)
    torch.testing.assert_close(sharpen(p, 0.1), plain)
    torch.testing.assert_close(sharpen(p, 1.0), p)
    with pytest.raises(ValueError, match="temperature"):
        sharpen(p, 0.0)


def test_terms_run_in_float32_under_autocast() -> None:
    p = _probabilities(4, 3, 4).float().bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert distribution_cross_entropy(p, p).dtype == torch.float32
        assert mean_entropy_maximisation(p).dtype == torch.float32
        assert sharpen(p, 0.5).dtype == torch.float32
