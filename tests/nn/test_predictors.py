"""Predictors: hypernetwork == per-sample F.linear loop, factorized == materialized, linearity, MLP order."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from tests.methods.plain import plain_hypernetwork

from sie.nn.predictors import HypernetworkPredictor, MLPPredictor, batched_linear


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_batched_linear_equals_loop() -> None:
    x, w, b = _randn(3, 4, seed=0), _randn(3, 5, 4, seed=1), _randn(3, 5, seed=2)
    expected = torch.stack([F.linear(x[n], w[n], b[n]) for n in range(3)])
    torch.testing.assert_close(batched_linear(x, w, b), expected)
    assert batched_linear(x[:1], w[:1]).shape == (1, 5)


CONFIGS = list(
    itertools.product(["linear", "deep"], [False, True], [False, True], [False, True], [(), (6,), (7, 3)])
)


@pytest.mark.parametrize(("hypernetwork", "bias_pred", "bias_hypernet", "relu", "hidden"), CONFIGS)
@pytest.mark.parametrize("implementation", ["factorized", "materialized"])
def test_hypernetwork_equals_per_sample_linear_loop(
    hypernetwork: str,
    bias_pred: bool,
    bias_hypernet: bool,
    relu: bool,
    hidden: tuple[int, ...],
    implementation: str,
) -> None:
    torch.manual_seed(0)
    predictor = HypernetworkPredictor(
        5,
        4,
        hidden,
        hypernetwork=hypernetwork,  # type: ignore[arg-type]
        bias_pred=bias_pred,
        bias_hypernet=bias_hypernet,
        relu=relu,
        implementation=implementation,  # type: ignore[arg-type]
    ).double()
    z, g = _randn(3, 5, seed=3), _randn(3, 4, seed=4)
    torch.testing.assert_close(predictor(z, g), plain_hypernetwork(predictor, z, g), rtol=1e-5, atol=1e-10)


def test_factorized_equals_materialized_in_value_and_gradient() -> None:
    torch.manual_seed(0)
    predictor = HypernetworkPredictor(64, 4).double()
    z, g = _randn(9, 64, seed=5), _randn(9, 4, seed=6)
    results = {}
    for implementation in ("factorized", "materialized"):
        predictor.implementation = implementation  # type: ignore[assignment]
        predictor.zero_grad()
        zz = z.clone().requires_grad_(True)
        out = predictor(zz, g)
        (out.sin().sum()).backward()
        results[implementation] = (out.detach(), zz.grad, predictor.generator.weight.grad.clone())
    for a, b in zip(results["factorized"], results["materialized"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_reference_default_is_w_of_g_times_z_with_w_linear_in_g() -> None:
    # p_g(z) = W(g) z with W(g) = sum_k g_k A_k and A_k the k-th column of the hypernetwork weight.
    torch.manual_seed(0)
    d = 6
    predictor = HypernetworkPredictor(d, 4).double()
    assert predictor.generator.weight.shape == (d * d, 4) and predictor.generator.bias is None
    z, g = _randn(2, d, seed=7), _randn(2, 4, seed=8)
    columns = [predictor.generator.weight[:, k].reshape(d, d) for k in range(4)]
    for n in range(2):
        w = sum(g[n, k] * columns[k] for k in range(4))
        torch.testing.assert_close(predictor(z[n : n + 1], g[n : n + 1])[0], w @ z[n])
    # Linear (hence odd) in g: p(a g1 + b g2) = a p(g1) + b p(g2); g and -g give opposite outputs.
    g1, g2 = _randn(2, 4, seed=9), _randn(2, 4, seed=10)
    combined = predictor(z, 2.0 * g1 - 0.5 * g2)
    torch.testing.assert_close(combined, 2.0 * predictor(z, g1) - 0.5 * predictor(z, g2))
    torch.testing.assert_close(predictor(z, -g1), -predictor(z, g1))


def test_paper_size_hypernetwork_parameters() -> None:
    predictor = HypernetworkPredictor(1024, 4)
    assert sum(p.numel() for p in predictor.parameters()) == 4_194_304  # Linear(4, 1024^2, bias=False)
    deep = HypernetworkPredictor(8, 6, (4,), hypernetwork="deep", bias_pred=True)
    assert deep.total_params == 8 * 4 + 4 + 4 * 8 + 8
    assert [m.in_features for m in deep.code if isinstance(m, torch.nn.Linear)] == [6, 6]  # hidden width = P


@pytest.mark.parametrize("implementation", ["factorized", "materialized"])
def test_batch_of_one_keeps_its_batch_dimension(implementation: str) -> None:
    predictor = HypernetworkPredictor(8, 4, implementation=implementation)  # type: ignore[arg-type]
    assert predictor(torch.randn(1, 8), torch.randn(1, 4)).shape == (1, 8)
    assert MLPPredictor(8, 4)(torch.randn(1, 8), torch.randn(1, 4)).shape == (1, 8)


def test_predictors_refuse_bad_shapes() -> None:
    predictor = HypernetworkPredictor(8, 4)
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        predictor(torch.randn(2, 7), torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        predictor(torch.randn(2, 8), torch.randn(2, 6))
    with pytest.raises(ValueError, match="implementation"):
        HypernetworkPredictor(8, 4, implementation="fast")  # type: ignore[arg-type]


def test_mlp_predictor_concatenates_parameters_first() -> None:
    torch.manual_seed(0)
    predictor = MLPPredictor(5, 4).double()
    (layer,) = list(predictor.net)
    assert (layer.in_features, layer.out_features) == (9, 5)
    z, g = _randn(3, 5, seed=11), _randn(3, 4, seed=12)
    expected = g @ layer.weight[:, :4].T + z @ layer.weight[:, 4:].T + layer.bias
    torch.testing.assert_close(predictor(z, g), expected)
    deep = MLPPredictor(5, 4, num_layers=3)
    kinds = [type(m).__name__ for m in deep.net]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]


def _measured_gain(predictor: HypernetworkPredictor, dim: int, samples: int = 512) -> float:
    """Mean ||p_g(z)|| / ||z|| over random embeddings z and random unit quaternions g."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(samples, dim, generator=g)
    q = F.normalize(torch.randn(samples, 4, generator=g), dim=1)
    with torch.no_grad():
        return float((predictor(z, q).norm(dim=1) / z.norm(dim=1)).mean())


def test_default_init_gain_is_about_0_29_sqrt_d_and_init_gain_sets_it() -> None:
    dim = 256
    torch.manual_seed(0)
    reference = HypernetworkPredictor(dim, 4)
    # PyTorch's default U(-1/2, 1/2) for 4 inputs: std 1 / sqrt(12) per generated weight.
    assert _measured_gain(reference, dim) == pytest.approx(dim**0.5 / 12**0.5, rel=0.1)
    for gain in (0.5, 1.0, 3.0):
        torch.manual_seed(0)
        scaled = HypernetworkPredictor(dim, 4, init_gain=gain)
        assert _measured_gain(scaled, dim) == pytest.approx(gain, rel=0.1)
        # Only the scale changes: the same draw, multiplied by one number.
        ratio = (scaled.generator.weight / reference.generator.weight).detach()
        torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0, 0])))


def test_init_gain_scales_each_generated_layer_by_its_own_fan_in() -> None:
    torch.manual_seed(0)
    predictor = HypernetworkPredictor(64, 4, (16,), init_gain=1.0)
    for fan_in, fan_out, w_off, _ in predictor.layers:
        rows = predictor.generator.weight.detach()[w_off : w_off + fan_in * fan_out]
        assert float(rows.std()) == pytest.approx(fan_in**-0.5, rel=0.1)
    with pytest.raises(ValueError, match="init_gain"):
        HypernetworkPredictor(8, 4, init_gain=0.0)


def test_the_config_key_reaches_the_predictor() -> None:
    from sie.config import ModelConfig
    from sie.methods.base import build_predictor

    torch.manual_seed(0)
    reference = build_predictor(ModelConfig(), 128, 4)
    torch.manual_seed(0)
    scaled = build_predictor(ModelConfig(hypernetwork_init_gain=1.0), 128, 4)
    assert isinstance(reference, HypernetworkPredictor) and isinstance(scaled, HypernetworkPredictor)
    assert _measured_gain(reference, 128) > 2.5  # 0.29 sqrt(128) = 3.3
    assert _measured_gain(scaled, 128) == pytest.approx(1.0, rel=0.1)
