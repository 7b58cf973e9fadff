"""seq-JEPA: the loss against a plain re-computation, what each input reaches, EMA, variants, refusals."""

from __future__ import annotations

import math

import pytest
import torch
from tests.methods.plain import random_batch

from sie.config import resolve_config
from sie.errors import ConfigError
from sie.methods import StepProgress, build_method, views_per_sample
from sie.methods.seq_jepa import SeqJEPA

pytestmark = pytest.mark.usefixtures("stand_in_backbone")


def _method(*overrides: str, seed: int = 0) -> SeqJEPA:
    torch.manual_seed(seed)
    cfg = resolve_config(
        "paper",
        overrides=[
            "model.method=seq-jepa",
            "model.seq_jepa.pred_hidden=32",
            "model.seq_jepa.action_dim=16",
            "model.seq_jepa.dropout=0.0",
            *overrides,
        ],
    )
    method = build_method(cfg, 4)
    assert isinstance(method, SeqJEPA)
    return method


def _plain_loss(method: SeqJEPA, views: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The module docstring's formula, written out step by step with the method's own layers."""
    b, k = views.shape[:2]
    m = k - 1
    z = [method.backbone(views[:, i]) for i in range(m)]
    target = method.target_encoder.module(views[:, m])
    linear, norm = method.action_embedding[0], method.action_embedding[1]
    flat = linear(g.reshape(b * m, -1))
    mean, var = flat.mean(0), flat.var(0, unbiased=False)
    a = ((flat - mean) / torch.sqrt(var + norm.eps)).reshape(b, m, -1)  # BatchNorm, affine=False, batch stats
    tokens = [torch.cat([z[i], a[:, i] if i < m - 1 else torch.zeros_like(a[:, i])], dim=1) for i in range(m)]
    x = torch.stack([method.agg_token[0, 0].expand(b, -1), *tokens], dim=1)
    context = method.aggregator(x)[:, 0]
    prediction = method.predictor(torch.cat([context, a[:, m - 1]], dim=1))
    cosines = []
    for row in range(b):
        p, t = prediction[row], target[row]
        cosines.append(torch.dot(p, t) / (p.norm() * t.norm()))
    return 1 - torch.stack(cosines).mean()


def test_loss_equals_the_plain_formula() -> None:
    method = _method().train()
    batch = random_batch(6, 4, views=4, seed=3)
    got = method(batch).loss
    torch.manual_seed(0)
    expected = _plain_loss(method, batch.views, batch.transforms)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert 0.0 <= float(got.detach()) <= 2.0


def test_dimensions_views_and_terms() -> None:
    method = _method()
    assert views_per_sample(method.cfg) == 4 and method.views_per_sample == 4
    assert method.token_dim == 512 + 16 and method.agg_token.shape == (1, 1, 528)
    assert method.predictor[0].in_features == 528 + 16 and method.predictor[-1].out_features == 512
    assert len(method.aggregator.layers) == 3 and method.aggregator.layers[0].self_attn.num_heads == 4
    assert method.aggregator.layers[0].linear1.out_features == 4 * 528
    out = method(random_batch(4, 4, views=4))
    assert set(out.terms) == {"loss/seq_jepa"} and out.representations.shape == (4, 4, 512)
    # The EMA target is frozen and not in the trainable groups.
    trainable = {id(p) for g in method.parameter_groups() for p in g.params}
    assert all(id(p) not in trainable for p in method.target_encoder.parameters())


def test_what_each_input_reaches() -> None:
    method = _method().eval()  # BatchNorm on running statistics: rows do not mix
    batch = random_batch(3, 4, views=4, seed=1)
    z = torch.stack([method.backbone(batch.views[:, i]) for i in range(3)], dim=1)
    context = method.aggregate(z, batch.transforms[:, :2])
    # The last observed view's own action (to the target view) is not in the context ...
    changed = batch.transforms.clone()
    changed[:, 2] += 1.0
    torch.testing.assert_close(method.aggregate(z, changed[:, :2]), context)
    # ... but the earlier actions are.
    changed[:, 0] += 1.0
    assert not torch.allclose(method.aggregate(z, changed[:, :2]), context)
    # The target view reaches only the target: the prediction does not depend on it.
    views = batch.views.clone()
    views[:, 3] = torch.randn_like(views[:, 3])
    loss_a, loss_b = method(batch).loss, method(type(batch)(views, batch.transforms, batch.labels)).loss
    assert not torch.isclose(loss_a, loss_b)


def test_predict_is_a_context_of_one_view() -> None:
    method = _method().eval()
    h = torch.randn(5, 512)
    g = torch.randn(5, 4)
    by_hand = method.predictor(
        torch.cat(
            [method.aggregate(h[:, None], g.new_zeros(5, 0, 4)), method.embed_actions(g[:, None])[:, 0]], 1
        )
    )
    torch.testing.assert_close(method.predict(method.embed_equivariant(h), g), by_hand)
    assert method.has_predictor and method.predict(h, g).shape == (5, 512)


def test_ema_target_moves_by_the_epoch_cosine() -> None:
    method = _method("model.seq_jepa.ema=0.9")
    online = next(method.backbone.parameters())
    target = next(method.target_encoder.module.parameters())
    with torch.no_grad():
        online.add_(1.0)
    before = target.detach().clone()
    method.on_step_end(StepProgress(step=10, total_steps=40, epoch=1, epochs=4))
    tau = 1 - 0.1 * (math.cos(math.pi * 0.25) + 1) / 2
    torch.testing.assert_close(target, tau * before + (1 - tau) * online.detach())
    assert float(method.target_encoder.momentum) == pytest.approx(tau)


def test_without_action_conditioning() -> None:
    method = _method("model.seq_jepa.action_conditioning=false")
    assert method.action_embedding is None and method.token_dim == 512 and not method.has_predictor
    assert method.predictor[0].in_features == 512
    out = method(random_batch(4, 4, views=4))
    assert torch.isfinite(out.loss)
    # No action reaches anything.
    batch = random_batch(4, 4, views=4)
    method.eval()
    moved = type(batch)(batch.views, batch.transforms + 3.0, batch.labels)
    torch.testing.assert_close(method(batch).loss, method(moved).loss)


def test_raw_actions_pad_the_token_to_the_heads() -> None:
    method = _method("model.seq_jepa.learn_action_embedding=false", "model.seq_jepa.num_heads=8")
    assert (
        method.token_dim == 520 and method.predictor[0].in_features == 520 + 4
    )  # 512 + 4, padded to 8 | 520
    assert torch.isfinite(method(random_batch(4, 4, views=4)).loss)


def test_sequence_length_sets_the_views() -> None:
    method = _method("model.seq_jepa.seq_len=1")
    assert method.views_per_sample == 2
    assert torch.isfinite(method(random_batch(4, 4, views=2)).loss)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.seq_jepa.seq_len=0", r"model\.seq_jepa\.seq_len=0 is out of range for method 'seq-jepa'"),
        ("model.seq_jepa.num_heads=5", r"model\.seq_jepa\.num_heads=5 does not divide the token width 528"),
        ("model.seq_jepa.ema=1.5", r"model\.seq_jepa\.ema=1\.5 is out of range"),
    ],
)
def test_bad_settings_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _method(override)


def test_settings_of_seq_jepa_on_another_method_are_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"model\.seq_jepa\.seq_len=5 is a setting of method 'seq-jepa', not of"
    ):
        resolve_config("paper", overrides=["model.method=sie", "model.seq_jepa.seq_len=5"])
    with pytest.raises(
        ConfigError, match=r"data\.views_per_sample=2: model\.method='seq-jepa' trains on 4 views"
    ):
        views_per_sample(
            resolve_config("paper", overrides=["model.method=seq-jepa", "data.views_per_sample=2"])
        )
