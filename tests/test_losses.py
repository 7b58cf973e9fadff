"""Loss terms: hand-checkable cases and agreement with plainly written loops (float64, rtol 1e-5)."""

from __future__ import annotations

import math

import pytest
import torch
from tests.methods.plain import plain_covariance, plain_info_nce, plain_mse, plain_variance

from sie.losses import cosine_distance_loss, covariance_loss, info_nce_loss, invariance_loss, variance_loss


def _random(*shape: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---- hand-checkable cases -----------------------------------------------------------------------


def test_variance_hand_cases() -> None:
    # A constant column has variance 0 -> std = sqrt(1e-4) = 0.01 -> hinge 0.99.
    assert variance_loss(torch.zeros(4, 3, dtype=torch.float64)).item() == pytest.approx(0.99)
    # Column [0, 2]: unbiased variance 2 (N - 1 = 1), std > 1 -> no penalty.
    assert variance_loss(torch.tensor([[0.0], [2.0]], dtype=torch.float64)).item() == 0.0
    # Column [0, 1]: unbiased variance 0.5 -> 1 - sqrt(0.5001); a biased variance (0.25) would give ~0.5.
    expected = 1 - math.sqrt(0.5001)
    assert variance_loss(torch.tensor([[0.0], [1.0]], dtype=torch.float64)).item() == pytest.approx(expected)


def test_covariance_hand_cases() -> None:
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    # Cov = Zc^T Zc / (N - 1) = [[2, 2], [2, 2]]; off-diagonal squares 4 + 4 = 8; / D = 2 -> 4.
    assert covariance_loss(z).item() == pytest.approx(4.0)
    # The reference's normaliser: the configured batch size - 1 (here 3) instead of N - 1.
    assert covariance_loss(z, denominator=3).item() == pytest.approx(2 * (2 / 3) ** 2 / 2)
    # Divided by a different D (the reference's emb_size when it differs from the width).
    assert covariance_loss(z, num_dims=8).item() == pytest.approx(1.0)
    # Uncorrelated columns give 0.
    assert covariance_loss(torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])).item() == 0.0


def test_info_nce_hand_cases() -> None:
    # N = 1: each row's only other row is its positive -> softmax of one logit -> loss 0.
    a = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    assert info_nce_loss(a, a.clone()).item() == pytest.approx(0.0, abs=1e-12)
    # N = 2, orthonormal views, identical pairs, temperature 1: row e1 sees positive 1, negatives 0, 0.
    e = torch.eye(2, dtype=torch.float64)
    assert info_nce_loss(e, e.clone(), temperature=1.0).item() == pytest.approx(math.log(math.e + 2) - 1)
    # Scale of the inputs does not matter (L2-normalised), the temperature does.
    assert info_nce_loss(3 * e, e.clone(), temperature=1.0).item() == pytest.approx(math.log(math.e + 2) - 1)
    at_01 = info_nce_loss(e, e.clone(), temperature=0.1).item()
    assert at_01 == pytest.approx(math.log(math.exp(10) + 2) - 10)


def test_info_nce_similarity_floor_by_hand() -> None:
    # N = 1 with opposite rows: only the positive remains, loss 0 with or without the floor. N = 2 with
    # a_1 = -a_0 and b = a: row a_0 sees positive a_0 (cos 1), negatives a_1 (cos -1) and b_1 (cos -1).
    # The floor raises both negatives to 0: loss = log(e + 2) - 1 at temperature 1, as orthogonal rows.
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    floored = info_nce_loss(a, a.clone(), temperature=1.0, min_similarity=0.0).item()
    assert floored == pytest.approx(math.log(math.e + 2) - 1)
    plain = info_nce_loss(a, a.clone(), temperature=1.0).item()
    assert plain == pytest.approx(math.log(math.e + 2 * math.exp(-1)) - 1)


def test_invariance_hand_case() -> None:
    a = torch.tensor([[0.0, 0.0], [1.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    assert invariance_loss(a, b).item() == pytest.approx((4 + 4) / 4)


# ---- against the plain loops --------------------------------------------------------------------


@pytest.mark.parametrize(("n", "d", "scale"), [(2, 3, 1.0), (7, 5, 0.5), (16, 9, 2.0)])
def test_variance_matches_plain_loop(n: int, d: int, scale: float) -> None:
    z = _random(n, d, scale=scale)
    assert variance_loss(z).item() == pytest.approx(plain_variance(z), rel=1e-5, abs=1e-12)


@pytest.mark.parametrize(("n", "d", "denominator"), [(3, 4, None), (8, 6, None), (8, 6, 1023.0)])
def test_covariance_matches_plain_loop(n: int, d: int, denominator: float | None) -> None:
    z = _random(n, d, seed=1)
    assert covariance_loss(z, denominator).item() == pytest.approx(plain_covariance(z, denominator), rel=1e-5)


@pytest.mark.parametrize(("n", "d", "temperature"), [(1, 3, 0.1), (5, 4, 0.1), (6, 8, 0.5)])
def test_info_nce_matches_plain_loop(n: int, d: int, temperature: float) -> None:
    a, b = _random(n, d, seed=2), _random(n, d, seed=3)
    expected = plain_info_nce(a, b, temperature)
    assert info_nce_loss(a, b, temperature).item() == pytest.approx(expected, rel=1e-5)
    floored = plain_info_nce(a, b, temperature, min_similarity=1e-7)
    assert info_nce_loss(a, b, temperature, min_similarity=1e-7).item() == pytest.approx(floored, rel=1e-5)


def test_invariance_matches_plain_loop() -> None:
    a, b = _random(5, 7, seed=4), _random(5, 7, seed=5)
    assert invariance_loss(a, b).item() == pytest.approx(plain_mse(a, b), rel=1e-5)


# ---- precision and bad input --------------------------------------------------------------------


def test_half_precision_inputs_are_computed_in_fp32() -> None:
    z = _random(8, 4).to(torch.bfloat16)
    for value in (
        variance_loss(z),
        covariance_loss(z),
        info_nce_loss(z, z.flip(0)),
        invariance_loss(z, z * 2),
    ):
        assert value.dtype == torch.float32
    expected = plain_variance(z.double())  # the fp32 result on the bf16-rounded inputs
    assert variance_loss(z).item() == pytest.approx(expected, rel=1e-5)


def test_losses_refuse_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        variance_loss(torch.zeros(4))
    with pytest.raises(ValueError, match="denominator"):
        covariance_loss(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="shapes differ"):
        info_nce_loss(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="shapes differ"):
        invariance_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        info_nce_loss(torch.ones(2, 3), torch.ones(2, 3), temperature=0.0)


@pytest.mark.parametrize(
    "loss",
    [
        lambda a, b: info_nce_loss(a, b, 0.1),
        lambda a, b: covariance_loss(torch.cat([a, b], dim=1)),
        lambda a, b: variance_loss(a),
        lambda a, b: invariance_loss(a, b),
        lambda a, b: cosine_distance_loss(a, b),
    ],
    ids=["info_nce", "covariance", "variance", "invariance", "cosine_distance"],
)
def test_losses_are_full_precision_inside_autocast(loss) -> None:
    # Inside an autocast region the similarity / covariance matmuls would run in bf16; the losses turn
    # autocast off, so the value equals the fp32 computation outside it.
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 96, generator=gen), torch.randn(64, 96, generator=gen)
    outside = loss(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss(a, b)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, outside, rtol=0, atol=0)


def test_cosine_distance_by_hand_and_against_a_plain_loop() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert cosine_distance_loss(x, 3 * x).item() == pytest.approx(0.0, abs=1e-7)  # same directions
    assert cosine_distance_loss(x, x.flip(1)).item() == pytest.approx(1.0)  # orthogonal rows
    assert cosine_distance_loss(x, -x).item() == pytest.approx(2.0)  # opposite rows
    gen = torch.Generator().manual_seed(1)
    p, t = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    plain = 1 - sum(float(p[i] @ t[i]) / (float(p[i].norm()) * float(t[i].norm())) for i in range(5)) / 5
    assert cosine_distance_loss(p, t).item() == pytest.approx(plain, rel=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        cosine_distance_loss(p, t[:, :3])
