"""Predictor quality by retrieval: MRR and H@k (facebookresearch/SIE; docs/evaluation.md) and PRE , vectorised.

Queries (both metrics): for every object and every view ``v`` (including ``v = 0``), start from the
equivariant embedding of view 0 of the object and apply the predictor with the transformation from
view 0 to view ``v``: ``query = predict(z_0, g(0 -> v))``, L2-normalised. ``g`` is computed from the
latents with ``sie.data.targets.relative_transforms`` in the kind the model was trained with (quat,
or quat + hue deltas for rot+colour models, ...), so every predictor type can be evaluated (the
reference scripts hard-code a latent-4 linear hypernetwork).

* **MRR / H@k**: the gallery is the V embeddings of the query's own object; the true item is view ``v``.
  Modes (train, train) and (val, val) (with a per-object gallery, (val, all) would equal (val, val)).
* **PRE**: nearest neighbour by cosine similarity over the whole gallery (every view of every object of
  the gallery splits, the start view included); the error compares the absolute rotation of view ``v``
  with that of the retrieved view: ``1 - <q_gt, q_ret>^2``. Modes (train, train), (val, val) and
  (val, all) with all = train + val.

Similarities are chunked matrix products with a running arg-max, so memory stays bounded for the
2.6M-view gallery of 3DIEBench and there is no per-query Python loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sie.eval import metrics
from sie.geometry import euler_xyz_to_quaternion

__all__ = [
    "HITS_AT",
    "RetrievalScores",
    "nearest_neighbours",
    "own_gallery_ranks",
    "predictor_queries",
    "rotation_retrieval",
]

HITS_AT = (1, 2, 5, 10)

Predict = Callable[[Tensor, Tensor], Tensor]
"""``predict(z (n, E), g (n, P)) -> (n, E)``: the method's predictor."""
TransformFn = Callable[[Tensor], Tensor]
"""Latents (..., 2, L) -> transformation parameters (..., 1, P) (``relative_transforms`` in the run's kind)."""

_QUERY_CHUNK = 4096
_GALLERY_CHUNK = 65536


def _normalise(x: Tensor, eps: float = 1e-8) -> Tensor:
    out: Tensor = x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + eps)
    return out


@torch.no_grad()
def predictor_queries(
    predict: Predict, embeddings: Tensor, latents: Tensor, transform: TransformFn, *, device: torch.device
) -> Tensor:
    """Normalised predictions (N, V, E): ``predict(z[n, 0], g(view 0 -> view v))`` for every object n and view v.

    ``embeddings`` (N, V, E), ``latents`` (N, V, L); computed on ``device`` in chunks, returned on the CPU.
    """
    n, v, e = embeddings.shape
    start = latents[:, :1].expand(n, v, latents.shape[-1])
    pairs = torch.stack((start, latents), dim=2)  # (N, V, 2, L): view 0 -> view v
    g = transform(pairs.reshape(n * v, 2, -1))[:, 0].float()  # (N*V, P)
    z0 = embeddings[:, 0].repeat_interleave(v, dim=0)  # (N*V, E)
    out = torch.empty(n * v, e, dtype=torch.float32)
    for i in range(0, n * v, _QUERY_CHUNK):
        pred = predict(z0[i : i + _QUERY_CHUNK].to(device), g[i : i + _QUERY_CHUNK].to(device))
        out[i : i + _QUERY_CHUNK] = _normalise(pred.float()).cpu()
    return out.reshape(n, v, e)


@dataclass
class RetrievalScores:
    """Per-query retrieval outcomes of one mode (flattened object-major, Q = N * V queries)."""

    reciprocal_ranks: Tensor | None = None  # (Q,) float64, MRR mode only
    hits: dict[int, Tensor] | None = None  # k -> (Q,) float64
    nearest: Tensor | None = None  # (Q,) int64 index into the flattened gallery, PRE mode only
    errors: Tensor | None = None  # (Q,) float64 1 - <q_gt, q_ret>^2, PRE mode only

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.reciprocal_ranks is not None:
            out["MRR"] = float(self.reciprocal_ranks.mean())
        for k, h in (self.hits or {}).items():
            out[f"H@{k}"] = float(h.mean())
        if self.errors is not None:
            out["PRE"] = float(self.errors.mean())
        return out


@torch.no_grad()
def own_gallery_ranks(queries: Tensor, embeddings: Tensor, *, device: torch.device) -> RetrievalScores:
    """MRR/H@k: queries (N, V, E) (normalised) against each object's own gallery of V embeddings (N, V, E).

    The true item of query (n, v) is view v. Ties count as a random order (see ``sie.eval.metrics``).
    """
    n, v, _ = queries.shape
    rr: list[Tensor] = []
    hits: dict[int, list[Tensor]] = {k: [] for k in HITS_AT}
    objects_per_chunk = max(1, _QUERY_CHUNK // max(v, 1))
    true = torch.arange(v)
    for i in range(0, n, objects_per_chunk):
        q = queries[i : i + objects_per_chunk].to(device)
        g = _normalise(embeddings[i : i + objects_per_chunk].to(device).float())
        sims = torch.einsum("nqe,nve->nqv", q, g).reshape(-1, v)  # (chunk*V, V)
        greater, ties = metrics.rank_counts(sims, true.repeat(q.shape[0]).to(device))
        rr.append(metrics.expected_reciprocal_ranks(greater, ties).cpu())
        for k in HITS_AT:
            hits[k].append(metrics.expected_hits_at_k(greater, ties, k).cpu())
    return RetrievalScores(
        reciprocal_ranks=torch.cat(rr) if rr else torch.empty(0, dtype=torch.float64),
        hits={k: torch.cat(h) if h else torch.empty(0, dtype=torch.float64) for k, h in hits.items()},
    )


@torch.no_grad()
def nearest_neighbours(queries: Tensor, gallery: Tensor, *, device: torch.device) -> Tensor:
    """Index (Q,) of the most cosine-similar row of ``gallery`` (G, E) for each normalised query (Q, E).

    Chunked over queries and gallery with a running maximum (the first index wins a tie, as arg-max).
    """
    best_idx = torch.empty(queries.shape[0], dtype=torch.int64)
    for i in range(0, queries.shape[0], _QUERY_CHUNK):
        q = queries[i : i + _QUERY_CHUNK].to(device).float()
        best_val = torch.full((q.shape[0],), -torch.inf, device=device)
        best = torch.zeros(q.shape[0], dtype=torch.int64, device=device)
        for j in range(0, gallery.shape[0], _GALLERY_CHUNK):
            g = _normalise(gallery[j : j + _GALLERY_CHUNK].to(device).float())
            val, idx = (q @ g.T).max(dim=1)
            better = val > best_val
            best_val = torch.where(better, val, best_val)
            best = torch.where(better, idx + j, best)
        best_idx[i : i + _QUERY_CHUNK] = best.cpu()
    return best_idx


def rotation_retrieval(
    queries: Tensor,
    query_latents: Tensor,
    galleries: Sequence[tuple[Tensor, Tensor]],
    *,
    device: torch.device,
) -> RetrievalScores:
    """PRE: nearest neighbour of each query (N, V, E) over the concatenated galleries, rotation error.

    ``query_latents`` (N, V, L) give the true rotation of each query's target view; ``galleries`` is a
    list of (embeddings (M, V', E), latents (M, V', L)) that are flattened and concatenated.
    """
    flat_queries = queries.reshape(-1, queries.shape[-1])
    gallery = torch.cat([emb.reshape(-1, emb.shape[-1]) for emb, _ in galleries])
    gallery_angles = torch.cat([lat.reshape(-1, lat.shape[-1])[:, 0:3] for _, lat in galleries])
    nearest = nearest_neighbours(flat_queries, gallery, device=device)
    q_true = euler_xyz_to_quaternion(query_latents.reshape(-1, query_latents.shape[-1])[:, 0:3].double())
    q_ret = euler_xyz_to_quaternion(gallery_angles[nearest].double())
    return RetrievalScores(nearest=nearest, errors=metrics.rotation_retrieval_errors(q_true, q_ret))
