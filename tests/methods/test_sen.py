"""SEN-Contrastive (``sen``): loss, heads, gathering, config section.

The NT-Xent loss is rebuilt here by hand the way hafezgh/seq-jepa (models.py, SEN_Contrastive) writes
it: features [prediction; target], self-similarities removed, logits [positive, negatives] / tau,
cross-entropy with target 0 averaged over the 2N rows (Park et al., ICML 2022, for SEN itself).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tests.methods.plain import random_batch, rows, tiny_config
from torch import nn

import sie.methods.sen as sen_module
from sie.config import Config, resolve_config
from sie.errors import ConfigError
from sie.losses import info_nce_loss
from sie.methods import build_method
from sie.methods.base import Method
from sie.methods.sen import SENConfig

BATCH = 6
TEMP = 0.3


def _config(**section: object) -> Config:
    cfg = tiny_config("sen")
    opts = SENConfig(**{"mlp": "24-20-16", "action_dim": 8, "temperature": TEMP, **section})
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, sections=(("sen", opts),)))


def _build(**section: object) -> Method:
    torch.manual_seed(0)
    return build_method(_config(**section), 4).double()


def hand_nt_xent(prediction: torch.Tensor, target: torch.Tensor, temperature: float) -> float:
    """features = [prediction; target] normalised; row i: positive = partner, negatives = the 2N - 2 others."""
    feats = rows(prediction) + rows(target)
    feats = [[v / math.sqrt(sum(x * x for x in f)) for v in f] for f in feats]
    two_n = len(feats)
    n = two_n // 2
    total = 0.0
    for i in range(two_n):
        sims = [sum(a * b for a, b in zip(feats[i], feats[k], strict=True)) for k in range(two_n)]
        partner = (i + n) % two_n
        positive = sims[partner] / temperature
        negatives = [sims[k] / temperature for k in range(two_n) if k not in (i, partner)]
        logits = [positive, *negatives]  # cross-entropy with target 0
        total += -positive + math.log(sum(math.exp(v) for v in logits))
    return total / two_n


@pytest.mark.usefixtures("stand_in_backbone")
@pytest.mark.parametrize("learn", [True, False])
def test_sen_loss_is_the_hand_written_nt_xent(learn: bool) -> None:
    method = _build(learn_action_embedding=learn)
    batch = random_batch(BATCH, 4, size=4, seed=1, dtype=torch.float64)
    out = method(batch)
    with torch.no_grad():
        h_x, h_y = method.backbone(batch.x), method.backbone(batch.y)
        g = batch.pair_transform
        action = method.action_embedding(g) if learn else g
        prediction = method.predictor(torch.cat([action, method.projector(h_x)], dim=1))  # action first
        target = method.projector(h_y)
    expected = hand_nt_xent(prediction, target, TEMP)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.terms == pytest.approx({"loss/nce_equi": expected}, rel=1e-6)
    assert torch.equal(out.representations, torch.stack([h_x, h_y], dim=1))


def test_hand_written_nt_xent_agrees_with_a_hand_checked_case() -> None:
    # Two pairs, each prediction equal to its target and orthogonal to the other pair: every row has
    # cos 1 with its positive and cos 0 with its two negatives: loss = log(e^{1/t} + 2) - 1/t.
    e = torch.eye(2, dtype=torch.float64)
    expected = math.log(math.exp(1 / TEMP) + 2) - 1 / TEMP
    assert hand_nt_xent(e, e, TEMP) == pytest.approx(expected, rel=1e-12)
    assert info_nce_loss(e, e, TEMP).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.usefixtures("stand_in_backbone")
def test_gradient_flows_through_both_views() -> None:
    # No stop-gradient: view b's projection (the "target") gets gradient as well as view a's.
    method = _build()
    batch = random_batch(BATCH, 4, size=4, seed=2, dtype=torch.float64)
    views = batch.views.clone().requires_grad_(True)
    method(dataclasses.replace(batch, views=views)).loss.backward()
    assert views.grad is not None
    assert views.grad[:, 0].abs().sum() > 0 and views.grad[:, 1].abs().sum() > 0


@pytest.mark.usefixtures("stand_in_backbone")
def test_predictions_and_targets_are_gathered_separately(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a second rank: each gathered tensor is [this rank's rows; the other rank's rows]. The
    # positive of prediction i must stay target i (the reference gathers [pred; target] as one tensor,
    # which pairs other rows once there are several ranks; see docs/methods.md).
    method = _build()
    gen = torch.Generator().manual_seed(7)
    other = [torch.randn(BATCH, 16, generator=gen, dtype=torch.float64) for _ in range(2)]
    calls: list[torch.Tensor] = []

    def fake_gather(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.detach().clone())
        return torch.cat([x, other[len(calls) - 1]], dim=0)

    monkeypatch.setattr(sen_module, "gather_with_grad", fake_gather)
    out = method(random_batch(BATCH, 4, size=4, seed=3, dtype=torch.float64))
    assert len(calls) == 2
    prediction, target = calls
    expected = hand_nt_xent(torch.cat([prediction, other[0]]), torch.cat([target, other[1]]), TEMP)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def test_loss_is_fp32_under_autocast() -> None:
    a, b = torch.randn(8, 16), torch.randn(8, 16)
    exact = info_nce_loss(a, b, 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = info_nce_loss(a, b, 0.5)
    assert inside.dtype == torch.float32 and inside.item() == exact.item()


@pytest.mark.usefixtures("stand_in_backbone")
def test_sen_forward_under_bf16_autocast() -> None:
    method = build_method(_config(), 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(random_batch(4, 4))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


# ------------------------------------------------------------------------------------------ dimensions


@pytest.mark.usefixtures("stand_in_backbone")
def test_default_dimensions_are_seq_jepa_s() -> None:
    method = build_method(tiny_config("sen"), 4)
    proj = method.projector
    kinds = [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear, nn.BatchNorm1d]
    assert [type(m) for m in proj] == kinds
    linears = [m for m in proj if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 2048), (2048, 2048), (2048, 2048)]
    assert all(m.bias is None for m in linears)
    norms = [m for m in proj if isinstance(m, nn.BatchNorm1d)]
    assert [m.affine for m in norms] == [True, True, False]
    linear, norm = method.action_embedding
    assert (linear.in_features, linear.out_features, linear.bias) == (4, 128, None) and not norm.affine
    first, last = method.predictor
    assert (first.in_features, first.out_features, first.bias) == (2048 + 128, 2048, None)
    assert isinstance(last, nn.BatchNorm1d) and last.num_features == 2048 and not last.affine
    assert method.has_predictor
    assert method.cfg.model.section("sen").temperature == 0.5


@pytest.mark.usefixtures("stand_in_backbone")
def test_dimensions_come_from_the_section() -> None:
    method = build_method(_config(mlp="40-24", action_dim=6), 4)
    assert [m.out_features for m in method.projector if isinstance(m, nn.Linear)] == [40, 24]
    assert method.predictor[0].weight.shape == (24, 6 + 24)
    raw = build_method(_config(mlp="40-24", learn_action_embedding=False), 4)
    assert isinstance(raw.action_embedding, nn.Identity)
    assert raw.predictor[0].weight.shape == (24, 4 + 24)  # the raw quaternion


def test_projector_reads_the_backbone_width() -> None:
    method = build_method(
        dataclasses.replace(
            _config(), model=dataclasses.replace(_config().model, arch="convnet", small_stem=False)
        ),
        4,
    )
    assert method.repr_dim == 256 and method.projector[0].in_features == 256


@pytest.mark.usefixtures("stand_in_backbone")
def test_predictor_api_with_a_batch_of_one() -> None:
    method = _build().eval()
    with torch.no_grad():
        h = method.backbone(torch.randn(1, 3, 16, 16, dtype=torch.float64))
        z = method.embed_equivariant(h)
        assert z.shape == (1, 16)
        g = torch.randn(1, 4, dtype=torch.float64)
        expected = method.predictor(torch.cat([method.action_embedding(g), z], dim=1))
        torch.testing.assert_close(method.predict(z, g), expected)


# --------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.sen.temperature=0", "model.sen.temperature"),
        ("model.sen.temperature=-0.5", "model.sen.temperature"),
        ("model.sen.action_dim=0", "model.sen.action_dim"),
        ("model.sen.mlp=", "model.sen.mlp"),
        ("model.sen.mlp=2048-x", "model.sen.mlp"),
    ],
)
def test_bad_section_values_are_refused_in_one_line(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(overrides=["model.method=sen", override])
    message = str(info.value)
    assert key in message and "\n" not in message


def test_section_values_reach_the_method_and_other_methods_refuse_them() -> None:
    cfg = resolve_config(
        overrides=["model.method=sen", "model.sen.temperature=0.2", "model.sen.learn_action_embedding=false"]
    )
    assert cfg.model.section("sen") == SENConfig(temperature=0.2, learn_action_embedding=False)
    with pytest.raises(ConfigError) as info:
        resolve_config(overrides=["model.method=simclr", "model.sen.temperature=0.2"])
    assert "model.sen.temperature" in str(info.value) and "'sen'" in str(info.value)
