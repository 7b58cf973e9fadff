"""sie.eval.retrieval with synthetic equivariant embeddings and predictors of known quality."""

from __future__ import annotations

import math

import pytest
import torch

from sie.eval import metrics, retrieval, tasks
from sie.geometry import euler_xyz_to_matrix, quaternion_to_matrix

CPU = torch.device("cpu")


def rotation_latents(n: int, v: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    lat = torch.rand(n, v, 7, generator=gen, dtype=torch.float64)
    lat[..., 0:3] = (lat[..., 0:3] * 2 - 1) * math.pi / 2
    return lat


def matrix_embeddings(lat: torch.Tensor) -> torch.Tensor:
    """An exactly equivariant embedding: the flattened rotation matrix R of each view (N, V, 9)."""
    return euler_xyz_to_matrix(lat[..., 0:3]).reshape(*lat.shape[:2], 9).float()


def exact_predictor(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """R_v = R_0 R_rel with R_rel the matrix of g = quat(R_0^-1 R_v)."""
    return (z.reshape(-1, 3, 3).double() @ quaternion_to_matrix(g.double())).reshape(-1, 9).float()


def invariant_predictor(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return z


def quat_transform(pairs: torch.Tensor) -> torch.Tensor:
    return tasks.rotation_pair_target(pairs).unsqueeze(1)


def test_exact_predictor_retrieves_every_view() -> None:
    lat = rotation_latents(30, 8, seed=0)
    emb = matrix_embeddings(lat)
    queries = retrieval.predictor_queries(exact_predictor, emb, lat, quat_transform, device=CPU)
    ranks = retrieval.own_gallery_ranks(queries, emb, device=CPU).summary()
    assert ranks["MRR"] == pytest.approx(1.0) and ranks["H@1"] == pytest.approx(1.0)
    pre = retrieval.rotation_retrieval(queries, lat, [(emb, lat)], device=CPU)
    assert pre.summary()["PRE"] == pytest.approx(0.0, abs=1e-6)
    assert torch.equal(pre.nearest, torch.arange(30 * 8))  # each query finds its own target view


def test_invariant_predictor_scores_the_view_zero_level() -> None:
    n, v = 400, 10
    lat = rotation_latents(n, v, seed=1)
    emb = matrix_embeddings(lat)
    queries = retrieval.predictor_queries(invariant_predictor, emb, lat, quat_transform, device=CPU)
    pre = retrieval.rotation_retrieval(queries, lat, [(emb, lat)], device=CPU).summary()["PRE"]
    # It retrieves view 0 of the object: exact once in V, an independent rotation otherwise.
    assert pre == pytest.approx((v - 1) / v * metrics.simulate_independent_pre(50_000), abs=0.02)


def test_ranks_and_nearest_neighbours_match_plain_loops() -> None:
    gen = torch.Generator().manual_seed(2)
    n, v, e = 6, 5, 4
    queries = torch.nn.functional.normalize(torch.randn(n, v, e, generator=gen), dim=-1)
    emb = torch.randn(n, v, e, generator=gen)
    scores = retrieval.own_gallery_ranks(queries, emb, device=CPU)
    gallery = torch.randn(37, e, generator=gen)
    nearest = retrieval.nearest_neighbours(queries.reshape(-1, e), gallery, device=CPU)
    for i in range(n):
        for j in range(v):
            cos = [float(torch.dot(queries[i, j], emb[i, k]) / emb[i, k].norm()) for k in range(v)]
            rank = 1 + sum(c > cos[j] for c in cos)
            assert float(scores.reciprocal_ranks[i * v + j]) == pytest.approx(1 / rank)
            assert float(scores.hits[2][i * v + j]) == float(rank <= 2)
            gal_cos = [float(torch.dot(queries[i, j], g) / g.norm()) for g in gallery]
            assert int(nearest[i * v + j]) == max(range(37), key=lambda k: gal_cos[k])


def test_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(3)
    queries = torch.nn.functional.normalize(torch.randn(50, 6, generator=gen), dim=-1)
    gallery = torch.randn(333, 6, generator=gen)
    whole = retrieval.nearest_neighbours(queries, gallery, device=CPU)
    monkeypatch.setattr(retrieval, "_QUERY_CHUNK", 7)
    monkeypatch.setattr(retrieval, "_GALLERY_CHUNK", 10)
    assert torch.equal(retrieval.nearest_neighbours(queries, gallery, device=CPU), whole)


def test_orbit_figure_references_by_hand() -> None:
    from sie.eval import figure_data

    # Do-nothing retrieval: one object, views at 0° and 60° about x -> errors 0° and 60°, mean 30°.
    lat = torch.zeros(1, 2, 7, dtype=torch.float64)
    lat[0, 1, 0] = math.radians(60)
    arrays = figure_data.predictor_orbit_arrays(lat, torch.tensor([0, 1]), lat)
    assert float(arrays["orbit/reference/do_nothing"]) == pytest.approx(30.0, abs=1e-9)
    # Constant predictor = the identity quaternion; targets at 0° and 90° about x -> mean error 45°.
    half = math.sqrt(0.5)
    targets = torch.tensor([[0.0, 0.0, 0.0, 1.0], [half, 0.0, 0.0, half]])
    arrays = figure_data.orbit_error_arrays(
        "equi", targets, targets, constant=torch.tensor([0.0, 0.0, 0.0, 1.0])
    )
    assert float(arrays["orbit/reference/constant"]) == pytest.approx(45.0, abs=1e-6)
    assert arrays["orbit/equi/errors"].tolist() == pytest.approx([0.0, 0.0], abs=1e-4)
