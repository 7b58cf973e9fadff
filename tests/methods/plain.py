"""Independent, plainly written versions of every loss (Python loops over floats) and test builders.

Nothing here calls sie.losses: these are the formulas of the SIE paper and facebookresearch/SIE written out
element by element, to compare the vectorised implementations against (float64, rtol 1e-5).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sie.config import Config, DataConfig, ModelConfig, TrainConfig
from sie.data.batch import Batch

EPS = 1e-4


def rows(z: Tensor) -> list[list[float]]:
    return [[float(v) for v in row] for row in z.detach().double().tolist()]


def plain_mse(a: Tensor, b: Tensor) -> float:
    ra, rb = rows(a), rows(b)
    total = sum(
        (x - y) ** 2 for row_a, row_b in zip(ra, rb, strict=True) for x, y in zip(row_a, row_b, strict=True)
    )
    return total / (len(ra) * len(ra[0]))


def column_means(z: list[list[float]]) -> list[float]:
    n = len(z)
    return [sum(row[j] for row in z) / n for j in range(len(z[0]))]


def plain_variance(z: Tensor, eps: float = EPS) -> float:
    """mean_j max(0, 1 - sqrt(unbiased var_j + eps))."""
    zz = rows(z)
    n, d = len(zz), len(zz[0])
    means = column_means(zz)
    hinge = 0.0
    for j in range(d):
        var = sum((zz[i][j] - means[j]) ** 2 for i in range(n)) / (n - 1)
        hinge += max(0.0, 1.0 - math.sqrt(var + eps))
    return hinge / d


def plain_covariance(z: Tensor, denominator: float | None = None) -> float:
    """sum_{j != k} (sum_i (z_ij - m_j)(z_ik - m_k) / denominator)^2 / D, denominator default N - 1."""
    zz = rows(z)
    n, d = len(zz), len(zz[0])
    denom = (n - 1) if denominator is None else denominator
    means = column_means(zz)
    centred = [[zz[i][j] - means[j] for j in range(d)] for i in range(n)]
    total = 0.0
    for j in range(d):
        for k in range(d):
            if j != k:
                c = sum(centred[i][j] * centred[i][k] for i in range(n)) / denom
                total += c * c
    return total / d


def plain_info_nce(a: Tensor, b: Tensor, temperature: float, min_similarity: float | None = None) -> float:
    """Mean over the 2N rows of -log softmax of the partner among the 2N - 1 other rows (cosines raised
    to ``min_similarity`` first when given)."""
    feats = rows(a) + rows(b)
    feats = [[v / math.sqrt(sum(x * x for x in f)) for v in f] for f in feats]
    two_n = len(feats)
    n = two_n // 2
    total = 0.0
    for i in range(two_n):
        partner = (i + n) % two_n
        sims = {}
        for k in range(two_n):
            cosine = sum(x * y for x, y in zip(feats[i], feats[k], strict=True))
            if min_similarity is not None:
                cosine = max(cosine, min_similarity)
            sims[k] = cosine / temperature
        log_denominator = math.log(sum(math.exp(sims[k]) for k in range(two_n) if k != i))
        total += log_denominator - sims[partner]
    return total / two_n


def plain_cross_entropy(logits: Tensor, labels: Tensor) -> float:
    total = 0.0
    for row, label in zip(rows(logits), labels.tolist(), strict=True):
        total += math.log(sum(math.exp(v) for v in row)) - row[int(label)]
    return total / len(labels)


def plain_hypernetwork(predictor: torch.nn.Module, z: Tensor, params: Tensor) -> Tensor:
    """Per-sample loop: flat = H(g_n); each generated layer's weight reshaped (out, in); F.linear."""
    sizes = [predictor.dim, *[layer[1] for layer in predictor.layers]]
    outputs = []
    for n in range(z.shape[0]):
        code = predictor.code(params[n : n + 1])[0]
        flat = predictor.generator.weight @ code
        if predictor.generator.bias is not None:
            flat = flat + predictor.generator.bias
        x = z[n]
        offset = 0
        for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            weight = flat[offset : offset + fan_out * fan_in].reshape(fan_out, fan_in)
            offset += fan_out * fan_in
            bias = None
            if predictor.bias_pred:
                bias = flat[offset : offset + fan_out]
                offset += fan_out
            x = F.linear(x, weight, bias)
            if predictor.relu and index < len(sizes) - 2:
                x = F.relu(x)
        outputs.append(x)
    return torch.stack(outputs)


class StandInBackbone(nn.Module):
    """(N, 3, H, W) -> (N, 512) by 4x4 average pooling and one linear map: a cheap backbone for tests of
    losses and of the method contract (the real backbones are tested in tests/nn and by the smoke test)."""

    num_features = 512

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.linear = nn.Linear(48, 512)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.linear(self.pool(x).flatten(1))
        return out


def tiny_config(method: str, **model: object) -> Config:
    """A method on a small-stem ResNet-18 with a 32-32-32 projector; data.transform follows the method."""
    from sie.methods import METHODS

    required = METHODS[method].requires_transform if method in METHODS else None
    transform = required[0] if required else "quat"
    options: dict[str, object] = {
        "method": method,
        "small_stem": True,
        "mlp": "32-32-32",
        "augself_mlp": "32-32",
        "num_classes": 5,
        "equi": 8 if method == "vicreg-partinv" else 256,
    }
    if method == "context-ssl":  # its default GPT has 153 M parameters: a 64-wide one for the smoke tests
        from sie.methods.context_ssl import ContextSSLConfig

        options["sections"] = (("context_ssl", ContextSSLConfig(n_embd=64, n_head=2, aux_hidden=32)),)
    options.update(model)
    data = DataConfig(transform=transform, resolution=16)  # type: ignore[arg-type]
    return Config(model=ModelConfig(**options), data=data, train=TrainConfig(batch_size=6))  # type: ignore[arg-type]


def random_batch(
    batch_size: int,
    param_dim: int,
    *,
    size: int = 16,
    seed: int = 0,
    dtype=torch.float32,
    views: int = 2,
    latents: bool = False,
) -> Batch:
    """Random images, parameters and labels; with ``latents``, also uniform (B, K, 7) latents in
    3DIEBench's ranges (drawn last, so the other tensors do not depend on it)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, views, 3, size, size, generator=gen, dtype=dtype)
    transforms = torch.randn(batch_size, views - 1, param_dim, generator=gen, dtype=dtype)
    labels = torch.randint(0, 5, (batch_size,), generator=gen)
    lat = None
    if latents:
        u = torch.rand(batch_size, views, 7, generator=gen, dtype=dtype)
        lat = u.clone()
        lat[..., 0:3] = (u[..., 0:3] - 0.5) * math.pi  # rotation angles in [-pi/2, pi/2]
    return Batch(views=images, transforms=transforms, labels=labels, latents=lat)


def one_intra_op_thread() -> Iterator[None]:
    """Run a test with one intra-op thread, then restore the previous count.

    These tests use tiny tensors that gain nothing from intra-op parallelism, while on a shared 2-core
    machine OpenMP's spin-waiting makes 2 threads about 10x slower under load (registry smoke test:
    240 s with 2 threads vs 25 s with 1 at load average 10, measured here).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
