"""sie.eval.metrics: hand-computed cases, independent plain formulas, and chance levels by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from sklearn.metrics import r2_score

from sie.eval import metrics as m

# ---- pooled-mean R² -------------------------------------------------------------------------------


def test_pooled_r2_matches_a_hand_computation() -> None:
    # targets [[1, 2], [3, 6]]: pooled mean = 3; total SS = 4 + 1 + 0 + 9 = 14.
    # predictions [[1, 3], [2, 6]]: residual SS = 0 + 1 + 1 + 0 = 2  ->  R² = 1 - 2/14 = 6/7.
    t = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    p = torch.tensor([[1.0, 3.0], [2.0, 6.0]])
    assert m.pooled_r2(p, t) == pytest.approx(6 / 7, abs=1e-12)


def test_pooled_r2_equals_a_plain_numpy_formula_and_differs_from_sklearn() -> None:
    rng = np.random.default_rng(0)
    # Columns with very different means, like a quaternion's w (about 0.53) next to x, y, z (about 0).
    t = rng.normal(size=(500, 4)) * 0.3 + np.array([0.0, 0.0, 0.0, 0.55])
    p = t.mean(axis=0, keepdims=True).repeat(500, axis=0)  # the constant per-column mean predictor
    plain = 1 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    ours = m.pooled_r2(torch.as_tensor(p), torch.as_tensor(t))
    assert ours == pytest.approx(plain, abs=1e-12)
    sk = r2_score(t, p)  # per-column centring, averaged: exactly 0 for the per-column mean
    assert sk == pytest.approx(0.0, abs=1e-12)
    assert ours > 0.1  # the pooled definition credits the constant predictor for the w offset


def test_pooled_r2_perfect_and_errors() -> None:
    t = torch.randn(10, 3)
    assert m.pooled_r2(t.clone(), t) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        m.pooled_r2(torch.zeros(10, 2), t)
    with pytest.raises(ValueError, match="constant"):
        m.pooled_r2(torch.zeros(4, 2), torch.ones(4, 2))


def test_device_variants_of_r2_and_top_k_give_the_same_numbers_as_tensors() -> None:
    t = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    p = torch.tensor([[1.0, 3.0], [2.0, 6.0]])
    value = m.pooled_r2_tensor(p, t)
    assert value.shape == () and value.dtype == torch.float64 and float(value) == pytest.approx(6 / 7)
    assert m.pooled_r2_tensor(torch.zeros(4, 2), torch.ones(4, 2)).isnan()  # undefined, no exception
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 0.0, 2.0]])
    labels = torch.tensor([0, 1, 1])
    for k in (1, 2, 3):
        assert float(m.top_k_accuracy_tensor(logits, labels, k)) == pytest.approx(
            m.top_k_accuracy(logits, labels, k)
        )
    assert float(m.top_k_accuracy_tensor(logits, labels, 1)) == pytest.approx(1 / 3)


# ---- classification -------------------------------------------------------------------------------


def test_top_k_accuracy_by_hand() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 0])
    assert m.top_k_accuracy(logits, labels, 1) == pytest.approx(1 / 3)  # only row 0
    assert m.top_k_accuracy(logits, labels, 2) == pytest.approx(2 / 3)  # row 1's label is 2nd
    assert m.top_k_accuracy(logits, labels, 5) == pytest.approx(1.0)  # k clipped to C


def test_majority_class_accuracy() -> None:
    fit = torch.tensor([0, 0, 0, 1, 1, 2])
    evaluated = torch.tensor([0, 1, 2, 0])
    assert m.majority_class_accuracy(fit, evaluated, 1) == pytest.approx(0.5)
    assert m.majority_class_accuracy(fit, evaluated, 2) == pytest.approx(0.75)


# ---- ranks, MRR, H@k --------------------------------------------------------------------------------


def test_three_item_gallery_true_item_second_gives_reciprocal_rank_half() -> None:
    query = torch.tensor([[1.0, 0.0]])
    gallery = torch.tensor([[[1.0, 0.1], [0.5, 0.5], [-1.0, 0.0]]])  # cosines ~0.995, 0.707, -1
    sims = m.cosine_similarities_own_gallery(query, gallery)
    greater, ties = m.rank_counts(sims, torch.tensor([1]))
    assert greater.tolist() == [1] and ties.tolist() == [0]
    assert m.expected_reciprocal_ranks(greater, ties).tolist() == [0.5]
    assert m.expected_hits_at_k(greater, ties, 1).tolist() == [0.0]
    assert m.expected_hits_at_k(greater, ties, 2).tolist() == [1.0]


def test_ranks_equal_the_argsort_definition_without_ties() -> None:
    gen = torch.Generator().manual_seed(1)
    q, v, e = 200, 50, 16
    queries, galleries = torch.randn(q, e, generator=gen), torch.randn(q, v, e, generator=gen)
    true = torch.randint(0, v, (q,), generator=gen)
    sims = m.cosine_similarities_own_gallery(queries, galleries)
    greater, ties = m.rank_counts(sims, true)
    rr = m.expected_reciprocal_ranks(greater, ties)
    # The reference: order = argsort(-sims); rank = 1 + position of the true view.
    plain_ranks = []
    for i in range(q):
        qn = queries[i] / queries[i].norm()
        gn = galleries[i] / galleries[i].norm(dim=1, keepdim=True)
        order = torch.argsort(-(gn @ qn)).tolist()
        plain_ranks.append(order.index(int(true[i])) + 1)
    ranks = np.array(plain_ranks)
    assert (ties == 0).all()
    np.testing.assert_allclose(rr.numpy(), 1.0 / ranks, rtol=1e-12)
    for k in (1, 2, 5, 10):
        np.testing.assert_array_equal(
            m.expected_hits_at_k(greater, ties, k).numpy(), (ranks <= k).astype(float)
        )


def test_ties_are_averaged_over_random_orders() -> None:
    # 2 items ahead, the true item tied with 3 others: rank is uniform on 3..6.
    greater, ties = torch.tensor([2]), torch.tensor([3])
    expected = np.mean([1 / r for r in (3, 4, 5, 6)])
    assert float(m.expected_reciprocal_ranks(greater, ties)) == pytest.approx(expected, abs=1e-12)
    assert float(m.expected_hits_at_k(greater, ties, 4)) == pytest.approx(0.5)
    # A collapsed (constant) embedding ranks at chance, neither first nor last.
    sims = torch.zeros(1, 50)
    g, t = m.rank_counts(sims, torch.tensor([7]))
    assert float(m.expected_reciprocal_ranks(g, t)) == pytest.approx(m.uniform_ranking_mrr(50), abs=1e-12)
    assert float(m.expected_hits_at_k(g, t, 5)) == pytest.approx(0.1, abs=1e-12)


# ---- PRE ------------------------------------------------------------------------------------------


def test_rotation_retrieval_error_by_hand() -> None:
    q = torch.tensor(Rotation.from_euler("xyz", [[0.3, -0.2, 1.0]]).as_quat())
    assert float(m.rotation_retrieval_errors(q, q)) == pytest.approx(0.0, abs=1e-12)
    assert float(m.rotation_retrieval_errors(q, -q)) == pytest.approx(0.0, abs=1e-12)  # same rotation
    identity = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    quarter = torch.tensor(Rotation.from_euler("z", [[math.pi / 2]]).as_quat())
    half = torch.tensor(Rotation.from_euler("x", [[math.pi]]).as_quat())
    assert float(m.rotation_retrieval_errors(identity, quarter)) == pytest.approx(0.5, abs=1e-12)  # sin²(45°)
    assert float(m.rotation_retrieval_errors(identity, half)) == pytest.approx(1.0, abs=1e-12)


def test_rotation_retrieval_error_equals_sin_squared_half_angle() -> None:
    rng = np.random.default_rng(3)
    a, b = Rotation.random(100, random_state=rng), Rotation.random(100, random_state=rng)
    theta = (a.inv() * b).magnitude()
    errors = m.rotation_retrieval_errors(torch.tensor(a.as_quat()), torch.tensor(b.as_quat()))
    np.testing.assert_allclose(errors.numpy(), np.sin(theta / 2) ** 2, atol=1e-12)


# ---- chance levels ----------------------------------------------------------------------------------


def test_uniform_ranking_levels() -> None:
    assert m.uniform_ranking_mrr(50) == pytest.approx(0.0900, abs=5e-5)
    assert m.uniform_ranking_mrr(3) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert [m.uniform_ranking_hits_at_k(50, k) for k in (1, 2, 5, 10)] == [0.02, 0.04, 0.1, 0.2]


def test_random_embeddings_score_the_uniform_ranking_levels() -> None:
    gen = torch.Generator().manual_seed(0)
    q, v = 20_000, 50
    sims = m.cosine_similarities_own_gallery(
        torch.randn(q, 8, generator=gen), torch.randn(q, v, 8, generator=gen)
    )
    g, t = m.rank_counts(sims, torch.randint(0, v, (q,), generator=gen))
    assert float(m.expected_reciprocal_ranks(g, t).mean()) == pytest.approx(
        m.uniform_ranking_mrr(v), abs=0.004
    )
    assert float(m.expected_hits_at_k(g, t, 5).mean()) == pytest.approx(0.1, abs=0.006)


def test_rotation_r2_floor_by_simulation_matches_scipy_and_the_digest() -> None:
    floor = m.simulate_rotation_r2_floor(400_000, seed=1)
    assert floor == pytest.approx(0.229, abs=0.004)
    # Independent: the same law through scipy and the plain pooled formula.
    rng = np.random.default_rng(5)
    a = rng.uniform(-math.pi / 2, math.pi / 2, (200_000, 3))
    b = rng.uniform(-math.pi / 2, math.pi / 2, (200_000, 3))
    t = (Rotation.from_euler("xyz", a).inv() * Rotation.from_euler("xyz", b)).as_quat()
    plain = 1 - ((t - t.mean(axis=0)) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    assert floor == pytest.approx(plain, abs=0.006)
    # Canonical (w >= 0) quaternions, as with data.canonical_quaternion: the mean moves, so does the floor.
    canonical = t * np.where(t[:, 3:] < 0, -1.0, 1.0)
    plain_canonical = (
        1 - ((canonical - canonical.mean(axis=0)) ** 2).sum() / ((canonical - canonical.mean()) ** 2).sum()
    )
    assert m.simulate_rotation_r2_floor(200_000, seed=1, canonical=True) == pytest.approx(
        plain_canonical, abs=0.006
    )


def test_independent_pre_and_invariant_pre_by_simulation() -> None:
    pre = m.simulate_independent_pre(200_000, seed=2)
    assert pre == pytest.approx(0.627, abs=0.004)
    # An invariant model retrieves view 0 of the object: exact for 1 view in 50, independent otherwise.
    gen = torch.Generator().manual_seed(4)
    angles = (torch.rand(4000, 50, 3, generator=gen, dtype=torch.float64) * 2 - 1) * m.ROTATION_RANGE
    q = torch.tensor(Rotation.from_euler("xyz", angles.reshape(-1, 3).numpy()).as_quat()).reshape(4000, 50, 4)
    errors = m.rotation_retrieval_errors(q.reshape(-1, 4), q[:, :1].expand(-1, 50, -1).reshape(-1, 4))
    assert float(errors.mean()) == pytest.approx(49 / 50 * 0.627, abs=0.006)


# ---- the PRE bar: the do-nothing predictor --------------------------------------------------------


def test_do_nothing_pre_by_hand_two_views_sixty_degrees_apart() -> None:
    # One object, view 0 at the identity, view 1 turned 60° about x. The queries are (0 -> 0) and
    # (0 -> 1); doing nothing retrieves view 0 for both: errors 0 and sin²(30°) = 1/4, mean 1/8.
    lat = torch.zeros(1, 2, 7, dtype=torch.float64)
    lat[0, 1, 0] = math.radians(60)
    assert m.do_nothing_retrieval_errors(lat).tolist() == pytest.approx([0.0, 0.25], abs=1e-12)
    assert m.do_nothing_pre(lat) == pytest.approx(0.125, abs=1e-12)
    # Starting from view 1 instead gives the same two errors in the other order.
    assert m.do_nothing_retrieval_errors(lat, start_view=1).tolist() == pytest.approx([0.25, 0.0], abs=1e-12)
    with pytest.raises(ValueError, match="start_view"):
        m.do_nothing_pre(lat, start_view=2)


def test_do_nothing_pre_equals_a_plain_loop_through_scipy() -> None:
    rng = np.random.default_rng(7)
    n, v = 12, 6
    angles = rng.uniform(-math.pi / 2, math.pi / 2, (n, v, 3))
    total = 0.0
    for i in range(n):
        start = Rotation.from_euler("xyz", angles[i, 0])
        for j in range(v):
            theta = (start.inv() * Rotation.from_euler("xyz", angles[i, j])).magnitude()
            total += math.sin(theta / 2) ** 2
    lat = torch.from_numpy(np.concatenate((angles, rng.uniform(size=(n, v, 4))), axis=-1))
    assert m.do_nothing_pre(lat) == pytest.approx(total / (n * v), abs=1e-12)


@pytest.mark.parametrize("views", [10, 20, 50])
def test_do_nothing_pre_is_about_v_minus_one_over_v_of_the_independent_level(views: int) -> None:
    gen = torch.Generator().manual_seed(views)
    lat = (
        torch.rand(200_000 // views, views, 3, generator=gen, dtype=torch.float64) * 2 - 1
    ) * m.ROTATION_RANGE
    independent = m.simulate_independent_pre(200_000, seed=3)
    assert m.do_nothing_pre(lat) == pytest.approx((views - 1) / views * independent, abs=0.006)
    # 3DIEBench's 50 views: 49/50 of 0.627 (docs/evaluation.md); 10 views (the demo): 0.564.
    expected = {10: 0.564, 20: 0.596, 50: 0.614}[views]
    assert m.do_nothing_pre(lat) == pytest.approx(expected, abs=0.006)


def test_constant_predictor_r2_of_colour_deltas_is_near_zero() -> None:
    gen = torch.Generator().manual_seed(0)
    hues = torch.rand(200_000, 2, 2, generator=gen, dtype=torch.float64)
    deltas = hues[:, 1] - hues[:, 0]  # floor and spot hue differences, not wrapped (reference)
    assert m.constant_predictor_r2(deltas[:100_000], deltas[100_000:]) == pytest.approx(0.0, abs=0.003)


# ---- effective rank (RankMe) ----------------------------------------------------------------------


def test_effective_rank_of_hand_made_matrices() -> None:
    # diag(2, 2, 2, 0): three equal singular values -> p = (1/3, 1/3, 1/3, 0) -> exp(log 3) = 3.
    three = torch.diag(torch.tensor([2.0, 2.0, 2.0, 0.0]))
    assert m.effective_rank(three, eps=0.0) == pytest.approx(3.0, abs=1e-9)
    # A rank-one matrix (every row a multiple of one vector) has effective rank 1.
    rank_one = torch.outer(torch.arange(1.0, 6.0), torch.tensor([1.0, -2.0, 0.5]))
    assert m.effective_rank(rank_one, eps=0.0) == pytest.approx(1.0, abs=1e-6)
    # Singular values (3, 1): p = (3/4, 1/4) -> exp(-(3/4 log 3/4 + 1/4 log 1/4)).
    two = torch.diag(torch.tensor([3.0, 1.0]))
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert m.effective_rank(two, eps=0.0) == pytest.approx(expected, abs=1e-12)


def test_effective_rank_equals_a_plain_numpy_formula() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 32)) @ np.diag(np.linspace(0.1, 3.0, 32))
    sigma = np.linalg.svd(x, compute_uv=False)
    p = sigma / sigma.sum() + 1e-7
    assert m.effective_rank(torch.from_numpy(x).float()) == pytest.approx(
        float(np.exp(-(p * np.log(p)).sum())), rel=1e-5
    )


def test_effective_rank_refuses_empty_or_zero_features() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        m.effective_rank(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="all-zero"):
        m.effective_rank(torch.zeros(3, 4))
