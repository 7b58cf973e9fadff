"""Loss terms as pure functions, exactly as the SIE reference computes them (facebookresearch/SIE; docs/methods.md).

Every function casts its inputs to float32 (or keeps float64) and runs with autocast turned off, so the
terms are computed in full precision even inside an autocast region (autocast would otherwise run the
covariance and similarity matmuls in half precision): the covariance and log-sum-exp terms are where
half precision hurts. Gathering across ranks is the caller's job: the batch-statistics terms
(variance, covariance, InfoNCE) expect tensors already gathered over all ranks
(:func:`sie.distributed.gather_with_grad`), while the MSE terms take the local batch (DDP's gradient
averaging then makes them the global mean, as in the reference).

Notation: Z is an (N, D) batch of embeddings (N rows = samples), Zc = Z - mean over rows.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "VARIANCE_EPS",
    "cosine_distance_loss",
    "covariance_loss",
    "distribution_cross_entropy",
    "info_nce_loss",
    "invariance_loss",
    "mean_entropy_maximisation",
    "sharpen",
    "variance_loss",
]

VARIANCE_EPS = 1e-4
"""Added to the variance before the square root (the reference's 0.0001)."""


def _full_precision(x: Tensor) -> Tensor:
    """float64 stays float64; everything else (fp16, bf16, fp32) is computed in float32."""
    return x if x.dtype == torch.float64 else x.float()


def _outside_autocast(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with autocast off on the device of its first tensor argument."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        if not torch.is_autocast_enabled(device):
            return fn(*args, **kwargs)
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


def _check_matrix(z: Tensor, name: str) -> None:
    if z.ndim != 2:
        raise ValueError(f"{name} must be an (N, D) matrix; got shape {tuple(z.shape)}")


@_outside_autocast
def invariance_loss(z_a: Tensor, z_b: Tensor) -> Tensor:
    """Mean squared error over all N x D entries (``F.mse_loss``): (N, D), (N, D) -> scalar.

    Used for the invariance term and for the prediction terms (prediction vs target embedding).
    """
    if z_a.shape != z_b.shape:
        raise ValueError(f"shapes differ: {tuple(z_a.shape)} vs {tuple(z_b.shape)}")
    return F.mse_loss(_full_precision(z_a), _full_precision(z_b))


@_outside_autocast
def variance_loss(z: Tensor, eps: float = VARIANCE_EPS) -> Tensor:
    """VICReg's variance hinge: ``mean_j relu(1 - sqrt(Var_j(Z) + eps))`` with the unbiased variance.

    Args:
        z: (N, D) embeddings gathered over all ranks, N >= 2 (the variance divides by N - 1).
        eps: added to the variance before the square root (1e-4 in the reference).

    Returns:
        A scalar in [0, 1]: 0 when every dimension has a standard deviation of at least 1.
    """
    _check_matrix(z, "z")
    z = _full_precision(z)
    std = torch.sqrt(z.var(dim=0, unbiased=True) + eps)
    return F.relu(1.0 - std).mean()


@_outside_autocast
def covariance_loss(z: Tensor, denominator: float | None = None, num_dims: int | None = None) -> Tensor:
    """VICReg's covariance term: ``sum_{j != k} Cov_jk^2 / D`` with ``Cov = Zc^T Zc / denominator``.

    Args:
        z: (N, D) embeddings gathered over all ranks.
        denominator: what the scatter matrix is divided by. ``None`` = N - 1 (the sample covariance).
            The reference passes its configured global batch size minus one, whatever N is
            (facebookresearch/SIE; docs/methods.md).
        num_dims: the D the sum is divided by; ``None`` = z's width (what every reference method ends
            up using: the concatenated width for SIE, the projector output width for VICReg).

    Returns:
        A non-negative scalar.
    """
    _check_matrix(z, "z")
    z = _full_precision(z)
    n, d = z.shape
    denom = float(n - 1) if denominator is None else float(denominator)
    if denom <= 0:
        raise ValueError(f"covariance denominator must be > 0; got {denom} (N = {n})")
    centred = z - z.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / denom
    off_diagonal = cov - torch.diag_embed(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / float(d if num_dims is None else num_dims)


@_outside_autocast
def info_nce_loss(
    z_a: Tensor, z_b: Tensor, temperature: float = 0.1, *, min_similarity: float | None = None
) -> Tensor:
    """NT-Xent / InfoNCE as the reference's ``info_nce_loss``: 2N rows, one positive each.

    ``F = normalize(cat([z_a, z_b]))`` (2N, D); similarities ``S = F F^T / temperature``; for row i
    the positive is its partner (i <-> i + N) and the 2N - 2 other non-self rows are negatives; the
    loss is the cross-entropy of the positive, averaged over the 2N rows. (The reference builds the
    logits as [positive, negatives] with target 0; masking the diagonal and targeting the partner is
    the same cross-entropy.)

    Args:
        z_a: (N, D) embeddings of the first views, gathered over all ranks.
        z_b: (N, D) embeddings of the second views (row i of z_b is the positive of row i of z_a).
        temperature: the softmax temperature (``simclr_temp``, 0.1 in the reference).
        min_similarity: if given, cosine similarities below it are raised to it before the division by
            the temperature (ContextSSL's ``nt_xent`` clamps them at 1e-7, Sharut/In-Context-Symmetries);
            None (the SIE reference) leaves them as they are.
    """
    _check_matrix(z_a, "z_a")
    if z_a.shape != z_b.shape:
        raise ValueError(f"shapes differ: {tuple(z_a.shape)} vs {tuple(z_b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z_a.shape[0]
    features = F.normalize(torch.cat([_full_precision(z_a), _full_precision(z_b)], dim=0), dim=1)
    similarities = features @ features.T
    if min_similarity is not None:
        similarities = similarities.clamp(min=min_similarity)
    logits = similarities / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=features.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    partner = torch.arange(2 * n, device=features.device).roll(n)  # row i's positive: (i + N) mod 2N
    return F.cross_entropy(logits, partner)


@_outside_autocast
def cosine_distance_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """``1 - mean_i cos(prediction_i, target_i)`` over the N rows of two (N, D) matrices, in [0, 2].

    The BYOL-family regression loss (BYOL's ``2 - 2 cos`` is twice it; seq-JEPA uses it as is). No
    stop-gradient here: the caller detaches the target where the method wants one.
    """
    _check_matrix(prediction, "prediction")
    if prediction.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(prediction.shape)} vs {tuple(target.shape)}")
    cosine = F.cosine_similarity(_full_precision(prediction), _full_precision(target), dim=1)
    return 1.0 - cosine.mean()


@_outside_autocast
def distribution_cross_entropy(target: Tensor, prediction: Tensor) -> Tensor:
    """``mean_n sum_k -target_nk log prediction_nk`` over (N, K) rows of probabilities: scalar.

    EquiCaps' invariance term between two views' capsule activations (``log(x ** -y)`` summed over the
    capsules, averaged over the local batch; no stop-gradient here). ``0 log 0`` counts as 0.
    """
    _check_matrix(prediction, "prediction")
    if target.shape != prediction.shape:
        raise ValueError(f"shapes differ: {tuple(target.shape)} vs {tuple(prediction.shape)}")
    per_row: Tensor = torch.special.xlogy(_full_precision(target), _full_precision(prediction)).sum(dim=1)
    return -per_row.mean()


@_outside_autocast
def mean_entropy_maximisation(probabilities: Tensor) -> Tensor:
    """``log K - H(mean_n p_n)`` for (N, K) rows of probabilities: 0 when the batch-mean is uniform.

    The MEMAX term of EquiCaps (from MSN, Assran et al., 2022): it keeps the capsule activations from all
    collapsing onto the same capsules. Expects rows gathered over all ranks (the mean is the global one).
    """
    _check_matrix(probabilities, "probabilities")
    mean = _full_precision(probabilities).mean(dim=0)
    negative_entropy: Tensor = torch.special.xlogy(mean, mean).sum()
    return negative_entropy + math.log(mean.shape[0])


@_outside_autocast
def sharpen(probabilities: Tensor, temperature: float) -> Tensor:
    """``p ** (1 / T) / sum_k p_k ** (1 / T)`` row-wise for (N, K) positive probabilities (T < 1 sharpens).

    Computed as ``softmax(log p / T)``, which is the same and stays finite for small T.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return torch.softmax(torch.log(_full_precision(probabilities)) / temperature, dim=-1)
