"""Evaluation metrics of the 3DIEBench protocol as pure functions, and their chance levels.

Every definition follows the reference evaluation scripts (facebookresearch/SIE; docs/evaluation.md):

* **Pooled-mean R²** (§7.1): ``1 - sum (t - p)^2 / sum (t - tbar)^2`` where ``tbar`` is ONE scalar, the
  mean over all ``N * K`` target entries. This is not sklearn's ``r2_score`` (which centres each output
  column on its own mean and averages the per-column scores): for quaternion targets the pooled
  version gives a constant mean-quaternion predictor about 0.23 instead of 0.
* **Top-k accuracy**: fraction of samples whose label is among the k largest logits.
* **MRR / H@k** (§7.6): each query has its own gallery (the views of its object); the rank of the true
  item is 1 + its position when the gallery is sorted by decreasing cosine similarity.
* **PRE** : mean over queries of ``1 - <q_gt, q_ret>^2`` for unit quaternions, i.e. the mean of
  ``sin^2(theta / 2)`` with ``theta`` the angle between the true and the retrieved rotation. Its bar
  is the do-nothing predictor (:func:`do_nothing_pre`), which returns the start view's embedding and so
  retrieves the start view itself (it is in the gallery).

Ties in a ranking (identical similarities, e.g. from a collapsed embedding) are resolved as a
uniformly random order of the tied items, in expectation: the reciprocal rank of a query is
``E[1 / rank]`` and H@k is ``P(rank <= k)`` under that random order. Without ties this is the plain
definition; with ties a constant embedding gets exactly the chance level rather than a perfect score
(best-case tie breaking) or the worst one (worst-case). The reference sorts with ``torch.argsort``,
whose order among ties is unspecified.

Chance levels (§7.7) are functions of the sampling law; the simulations draw Euler angles uniform in
``(-pi/2, pi/2)`` per axis (3DIEBench) and use :mod:`sie.geometry` for every conversion.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sie.geometry import euler_xyz_to_quaternion, relative_rotation_quaternion

__all__ = [
    "ROTATION_RANGE",
    "constant_predictor_r2",
    "cosine_similarities_own_gallery",
    "do_nothing_pre",
    "do_nothing_retrieval_errors",
    "effective_rank",
    "expected_hits_at_k",
    "expected_reciprocal_ranks",
    "majority_class_accuracy",
    "pooled_r2",
    "pooled_r2_tensor",
    "rank_counts",
    "rotation_retrieval_errors",
    "simulate_independent_pre",
    "simulate_rotation_r2_floor",
    "top_k_accuracy",
    "top_k_accuracy_tensor",
    "uniform_ranking_hits_at_k",
    "uniform_ranking_mrr",
]

ROTATION_RANGE = math.pi / 2
"""Half-width of the uniform law of each 3DIEBench Euler angle (facebookresearch/SIE; docs/evaluation.md)."""


# ---- regression and classification --------------------------------------------------------------


def pooled_r2(predictions: Tensor, targets: Tensor) -> float:
    """Pooled-mean R² of predictions (N, K) against targets (N, K) (or any equal shapes).

    ``1 - sum((t - p)^2) / sum((t - mean(t))^2)`` with a single scalar ``mean(t)`` over every entry,
    computed in float64. Raises ``ValueError`` on a shape mismatch or constant targets.
    """
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape"
        )
    if targets.numel() == 0:
        raise ValueError("pooled_r2 needs at least one target")
    value = pooled_r2_tensor(predictions, targets)
    if value.isnan() and not predictions.isnan().any():
        raise ValueError("pooled_r2 is undefined for constant targets (zero total sum of squares)")
    return float(value)


def pooled_r2_tensor(predictions: Tensor, targets: Tensor) -> Tensor:
    """:func:`pooled_r2` as a 0-d float64 tensor on the inputs' device, NaN for constant targets.

    For training loops: it never makes the host wait for the device (no ``.item()``, no branch on a
    value). Shapes must match (not checked: that would be the caller's bug).
    """
    t = targets.detach().to(torch.float64)
    p = predictions.detach().to(torch.float64)
    residual = ((t - p) ** 2).sum()
    total = ((t - t.mean()) ** 2).sum()
    return torch.where(total > 0, 1.0 - residual / total, torch.full_like(total, float("nan")))


def constant_predictor_r2(fit_targets: Tensor, eval_targets: Tensor) -> float:
    """Pooled R² on ``eval_targets`` (N, K) of the constant predictor = per-column mean of ``fit_targets`` (M, K).

    The trivial level of a regression probe: what predicting the training mean scores.
    """
    if fit_targets.ndim != 2 or eval_targets.ndim != 2 or fit_targets.shape[1] != eval_targets.shape[1]:
        raise ValueError(
            f"expected (M, K) and (N, K) targets; got {tuple(fit_targets.shape)} and {tuple(eval_targets.shape)}"
        )
    mean = fit_targets.detach().to(torch.float64).mean(dim=0, keepdim=True)
    return pooled_r2(mean.expand(eval_targets.shape[0], -1), eval_targets)


def effective_rank(features: Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al., ICML 2023): the effective rank of features (N, D), in [1, min(N, D)].

    ``exp(-sum_k p_k log p_k)`` with ``p_k = sigma_k / sum(sigma) + eps`` over the singular values
    ``sigma`` of the (uncentred) feature matrix, in float64. It equals ``r`` for a matrix with ``r``
    equal non-zero singular values, and falls towards 1 under dimensional collapse.
    """
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"expected a non-empty (N, D) feature matrix; got {tuple(features.shape)}")
    sigma = torch.linalg.svdvals(features.detach().to(torch.float64))
    total = sigma.sum()
    if float(total) == 0.0:
        raise ValueError("effective_rank is undefined for an all-zero feature matrix")
    p = sigma / total + eps
    return float(torch.exp(-torch.special.xlogy(p, p).sum()))  # 0 log 0 = 0 when eps = 0


def top_k_accuracy(logits: Tensor, labels: Tensor, k: int = 1) -> float:
    """Fraction of rows of logits (N, C) whose label (N,) is among the ``k`` largest logits."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"expected logits (N, C) and labels (N,); got {tuple(logits.shape)}, {tuple(labels.shape)}"
        )
    if logits.shape[0] == 0:
        raise ValueError("top_k_accuracy needs at least one sample")
    return float(top_k_accuracy_tensor(logits, labels, k))


def top_k_accuracy_tensor(logits: Tensor, labels: Tensor, k: int = 1) -> Tensor:
    """:func:`top_k_accuracy` as a 0-d float32 tensor on the logits' device (no host synchronisation)."""
    k = min(k, logits.shape[1])
    top = logits.detach().topk(k, dim=1).indices
    return (top == labels.unsqueeze(1)).any(dim=1).float().mean()


def majority_class_accuracy(fit_labels: Tensor, eval_labels: Tensor, k: int = 1) -> float:
    """Top-k accuracy on ``eval_labels`` (N,) of always answering the k most frequent classes of ``fit_labels`` (M,).

    The trivial level of a classifier on an imbalanced dataset (3DIEBench: 16% of objects are tables).
    """
    if fit_labels.numel() == 0 or eval_labels.numel() == 0:
        raise ValueError("majority_class_accuracy needs non-empty label sets")
    counts = torch.bincount(fit_labels.long().flatten())
    top = counts.topk(min(k, counts.numel())).indices
    return float(torch.isin(eval_labels.long().flatten(), top).double().mean())


# ---- retrieval: ranks, MRR, H@k ------------------------------------------------------------------


def cosine_similarities_own_gallery(queries: Tensor, galleries: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine similarities (Q, V) of each query (Q, E) with the V items of its own gallery (Q, V, E).

    Vectors are divided by ``norm + eps`` as the reference does (a zero vector gets similarity 0).
    """
    if queries.ndim != 2 or galleries.ndim != 3 or galleries.shape[::2] != queries.shape:
        raise ValueError(
            f"expected queries (Q, E) and galleries (Q, V, E); got {tuple(queries.shape)}, {tuple(galleries.shape)}"
        )
    q = queries / (torch.linalg.vector_norm(queries, dim=-1, keepdim=True) + eps)
    g = galleries / (torch.linalg.vector_norm(galleries, dim=-1, keepdim=True) + eps)
    return torch.einsum("qe,qve->qv", q, g)


def rank_counts(similarities: Tensor, true_index: Tensor) -> tuple[Tensor, Tensor]:
    """For similarities (Q, V) and the true item's column (Q,): (#items strictly more similar, #other items tied).

    Both are int64 (Q,). The true item's rank is ``greater + 1`` at best and ``greater + ties + 1`` at worst.
    """
    if similarities.ndim != 2 or true_index.shape != (similarities.shape[0],):
        raise ValueError(
            f"expected similarities (Q, V) and true_index (Q,); got {tuple(similarities.shape)}, "
            f"{tuple(true_index.shape)}"
        )
    true_sim = similarities.gather(1, true_index.long().unsqueeze(1))
    greater = (similarities > true_sim).sum(dim=1)
    ties = (similarities == true_sim).sum(dim=1) - 1
    return greater, ties


def expected_reciprocal_ranks(greater: Tensor, ties: Tensor) -> Tensor:
    """Reciprocal rank (Q,) float64, averaged over a uniformly random order of tied items.

    With ``g = greater`` and ``t = ties`` the rank is ``g + 1 + J``, ``J`` uniform on ``0..t``, so
    ``E[1/rank] = (H_{g+t+1} - H_g) / (t + 1)`` with harmonic numbers ``H``. With no ties this is
    ``1 / (g + 1)``.
    """
    g = greater.long()
    t = ties.long()
    largest = int((g + t + 1).max()) if g.numel() else 0
    inverse = 1.0 / torch.arange(1, largest + 1, dtype=torch.float64, device=g.device)
    harmonic = torch.cat((torch.zeros(1, dtype=torch.float64, device=g.device), inverse.cumsum(0)))
    result: Tensor = (harmonic[g + t + 1] - harmonic[g]) / (t + 1).to(torch.float64)
    return result


def expected_hits_at_k(greater: Tensor, ties: Tensor, k: int) -> Tensor:
    """P(rank <= k) (Q,) float64 under a uniformly random order of tied items (0 or 1 without ties)."""
    g = greater.to(torch.float64)
    t = ties.to(torch.float64)
    return ((k - g).clamp(min=0.0).minimum(t + 1)) / (t + 1)


# ---- rotation retrieval error (PRE) --------------------------------------------------------------


def rotation_retrieval_errors(q_true: Tensor, q_retrieved: Tensor) -> Tensor:
    """``1 - <q_true, q_retrieved>^2`` (N,) for quaternions (N, 4) (normalised here; sign-invariant).

    Equals ``sin^2(theta / 2)`` with ``theta`` the angle of the rotation between the two: 0 for the
    same rotation, 1 for a half turn. PRE is the mean of these.
    """
    if q_true.shape != q_retrieved.shape or q_true.shape[-1] != 4:
        raise ValueError(
            f"expected two (N, 4) quaternion tensors; got {tuple(q_true.shape)}, {tuple(q_retrieved.shape)}"
        )
    a = q_true.to(torch.float64)
    b = q_retrieved.to(torch.float64)
    a = a / torch.linalg.vector_norm(a, dim=-1, keepdim=True)
    b = b / torch.linalg.vector_norm(b, dim=-1, keepdim=True)
    errors: Tensor = (1.0 - (a * b).sum(-1) ** 2).clamp(min=0.0)
    return errors


def do_nothing_retrieval_errors(latents: Tensor, start_view: int = 0) -> Tensor:
    """Per-query rotation errors (N * V,) float64 of the do-nothing predictor, object-major.

    ``latents`` (N, V, L) of the query split, Euler xyz angles (radians) in columns 0:3. The PRE
    queries are, for every object n and every view v (``v = start_view`` included), the predictor
    applied to the start view's embedding with the transformation start -> v
    (``sie.eval.retrieval.predictor_queries``). A predictor that ignores the transformation returns the
    start view's own embedding; the start view is in the gallery and is retrieved (similarity 1), so
    query (n, v) scores ``1 - <q(n, start), q(n, v)>^2``: exactly 0 for ``v = start_view`` and the
    error of an unrelated view of the same object otherwise.
    """
    if latents.ndim != 3 or latents.shape[-1] < 3 or latents.shape[1] < 1:
        raise ValueError(f"expected latents (N, V, L >= 3); got {tuple(latents.shape)}")
    if not 0 <= start_view < latents.shape[1]:
        raise ValueError(f"start_view {start_view} is not one of the {latents.shape[1]} views")
    n, v = latents.shape[:2]
    q = euler_xyz_to_quaternion(latents[..., 0:3].to(torch.float64))  # (N, V, 4)
    start = q[:, start_view : start_view + 1].expand(n, v, 4)
    return rotation_retrieval_errors(q.reshape(-1, 4), start.reshape(-1, 4))


def do_nothing_pre(latents: Tensor, start_view: int = 0) -> float:
    """PRE of the do-nothing predictor on the query split's latents (N, V, L): the PRE chance level.

    The mean of :func:`do_nothing_retrieval_errors`. With V views per object and rotations drawn
    independently per view it is about ``(V - 1) / V`` times the PRE of a retrieval independent of the
    query (:func:`simulate_independent_pre`, ≈ 0.627 under the 3DIEBench law), since one query in V asks
    for the start view itself: ≈ 0.564 for V = 10 and ≈ 0.614 for V = 50.
    """
    return float(do_nothing_retrieval_errors(latents, start_view).mean())


# ---- chance levels -------------------------------------------------------------------------------


def uniform_ranking_mrr(gallery_size: int) -> float:
    """MRR of a uniformly random ranking of ``gallery_size`` items: H_n / n (0.0900 for n = 50)."""
    if gallery_size < 1:
        raise ValueError(f"gallery_size must be >= 1; got {gallery_size}")
    return sum(1.0 / r for r in range(1, gallery_size + 1)) / gallery_size


def uniform_ranking_hits_at_k(gallery_size: int, k: int) -> float:
    """H@k of a uniformly random ranking: min(k, n) / n (k / 50 for 3DIEBench)."""
    if gallery_size < 1:
        raise ValueError(f"gallery_size must be >= 1; got {gallery_size}")
    return min(k, gallery_size) / gallery_size


def _sample_euler(num: int, generator: torch.Generator, half_range: float) -> Tensor:
    return (torch.rand(num, 3, generator=generator, dtype=torch.float64) * 2 - 1) * half_range


def simulate_rotation_r2_floor(
    num_pairs: int = 200_000, seed: int = 0, half_range: float = ROTATION_RANGE, *, canonical: bool = False
) -> float:
    """Pooled R² of the constant mean-quaternion predictor under the 3DIEBench pair law (≈ 0.229).

    Draws ``num_pairs`` independent view pairs with Euler angles uniform in ``(-half_range, half_range)``,
    forms the relative quaternions of ``R_a^-1 R_b`` (not canonicalised, as the reference, unless
    ``canonical``: flipped to w >= 0 as with ``data.canonical_quaternion``), fits the mean on the first
    half and scores it on the second half.
    """
    gen = torch.Generator().manual_seed(seed)
    q_a = euler_xyz_to_quaternion(_sample_euler(num_pairs, gen, half_range))
    q_b = euler_xyz_to_quaternion(_sample_euler(num_pairs, gen, half_range))
    targets = relative_rotation_quaternion(q_a, q_b, canonical=canonical)
    half = num_pairs // 2
    return constant_predictor_r2(targets[:half], targets[half:])


def simulate_independent_pre(num: int = 200_000, seed: int = 0, half_range: float = ROTATION_RANGE) -> float:
    """PRE when the retrieved rotation is independent of the true one under the 3DIEBench law (≈ 0.627)."""
    gen = torch.Generator().manual_seed(seed)
    q_true = euler_xyz_to_quaternion(_sample_euler(num, gen, half_range))
    q_ret = euler_xyz_to_quaternion(_sample_euler(num, gen, half_range))
    return float(rotation_retrieval_errors(q_true, q_ret).mean())
