"""BYOL and Conditional BYOL (``byol``, ``byol-cond``): loss, heads, EMA target, config section.

The losses are recomputed here with plain loops over floats from the formulas of Grill et al.
(NeurIPS 2020) and hafezgh/seq-jepa (models.py: BYOL, BYOL_Conditional); the EMA recursion and its
cosine schedule are recomputed by hand. Methods get a cheap stand-in backbone unless a test needs a
real one.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tests.methods.plain import random_batch, rows, tiny_config
from torch import nn

from sie.config import Config, resolve_config
from sie.errors import ConfigError, UsageError
from sie.methods import StepProgress, build_method
from sie.methods.base import Method
from sie.methods.byol import BYOLCondConfig, BYOLConfig, byol_loss
from sie.nn.ema import ema_momentum

BATCH = 6
SMALL = {"proj_hidden": 24, "proj_dim": 12, "pred_hidden": 20}


def _config(name: str, **section: object) -> Config:
    cfg = tiny_config(name)
    section_cls = BYOLCondConfig if name == "byol-cond" else BYOLConfig
    opts = section_cls(**section)
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, sections=((section_cls.SECTION, opts),))
    )


def _build(name: str, **section: object) -> Method:
    torch.manual_seed(0)
    return build_method(_config(name, **{**SMALL, **section}), 4).double()


def _perturb_target(method: Method) -> None:
    """Move the target away from the online weights, so a swapped online/target would be caught."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in [*method.target_backbone.parameters(), *method.target_projector.parameters()]:
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def plain_byol_term(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """2 - 2 * (1/N) sum_i <p_i, t_i> / (|p_i| |t_i|), written out."""
    total = 0.0
    pairs = list(zip(rows(prediction), rows(target), strict=True))
    for p, t in pairs:
        dot = sum(a * b for a, b in zip(p, t, strict=True))
        norm_p = math.sqrt(sum(a * a for a in p))
        norm_t = math.sqrt(sum(b * b for b in t))
        total += dot / (norm_p * norm_t)
    return 2.0 - 2.0 * total / len(pairs)


# --------------------------------------------------------------------------------------------- losses


@pytest.mark.usefixtures("stand_in_backbone")
def test_byol_loss_is_the_symmetric_plain_formula() -> None:
    method = _build("byol")
    _perturb_target(method)
    batch = random_batch(BATCH, 4, size=4, seed=1, dtype=torch.float64)
    out = method(batch)
    with torch.no_grad():
        h_x, h_y = method.backbone(batch.x), method.backbone(batch.y)
        p_x, p_y = method.predictor(method.projector(h_x)), method.predictor(method.projector(h_y))
        t_x = method.target_projector.module(method.target_backbone.module(batch.x))
        ht_y = method.target_backbone.module(batch.y)
        t_y = method.target_projector.module(ht_y)
    expected = plain_byol_term(p_x, t_y) + plain_byol_term(p_y, t_x)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.terms == pytest.approx({"loss/byol": expected}, rel=1e-6)
    assert 0.0 <= expected <= 8.0
    assert torch.equal(out.representations, torch.stack([h_x, h_y], dim=1))
    # Stop-gradient: the target gets no gradient; every online head does.
    out.loss.backward()
    assert all(p.grad is None for p in method.target_backbone.parameters())
    assert all(p.grad is None for p in method.target_projector.parameters())
    assert all(p.grad is not None for p in [*method.projector.parameters(), *method.predictor.parameters()])


@pytest.mark.usefixtures("stand_in_backbone")
def test_byol_cond_loss_is_one_direction_from_view_a_and_the_action() -> None:
    method = _build("byol-cond", action_dim=8)
    _perturb_target(method)
    batch = random_batch(BATCH, 4, size=4, seed=2, dtype=torch.float64)
    out = method(batch)
    with torch.no_grad():
        h_x = method.backbone(batch.x)
        action = method.action_embedding(batch.pair_transform)
        prediction = method.predictor(torch.cat([action, method.projector(h_x)], dim=1))  # action first
        ht_y = method.target_backbone.module(batch.y)
        t_y = method.target_projector.module(ht_y)
    expected = plain_byol_term(prediction, t_y)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.terms == pytest.approx({"loss/byol": expected}, rel=1e-6)
    # View a's representation is the online backbone's, view b's the target's (as the reference returns).
    assert torch.equal(out.representations, torch.stack([h_x, ht_y], dim=1))
    out.loss.backward()
    assert method.action_embedding[0].weight.grad is not None


def test_byol_loss_hand_checked_cases() -> None:
    z = torch.tensor([[1.0, 2.0, 0.0], [0.0, -3.0, 4.0]])
    assert byol_loss(z, z).item() == pytest.approx(0.0, abs=1e-7)
    assert byol_loss(z, 5 * z).item() == pytest.approx(0.0, abs=1e-6)  # scale does not matter
    assert byol_loss(z, -z).item() == pytest.approx(4.0)
    e1, e2 = torch.eye(2)[:, None, :].unbind(0)
    assert byol_loss(e1.expand(3, 2), e2.expand(3, 2)).item() == pytest.approx(2.0)  # orthogonal
    # One row identical (cos 1), one orthogonal (cos 0): 2 - 2 * 1/2.
    assert byol_loss(
        torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ).item() == (pytest.approx(1.0))


@pytest.mark.usefixtures("stand_in_backbone")
def test_byol_gives_zero_for_identical_views_and_four_for_orthogonal_ones() -> None:
    # Predictor replaced by the identity, target = online (as built): identical views give 0;
    # embeddings forced orthogonal give 2 per direction.
    method = _build("byol")
    method.predictor = nn.Identity()
    batch = random_batch(BATCH, 4, size=4, seed=3, dtype=torch.float64)
    same = dataclasses.replace(batch, views=batch.views[:, :1].expand(-1, 2, -1, -1, -1).contiguous())
    assert method(same).loss.item() == pytest.approx(0.0, abs=1e-9)

    class Orthogonal(nn.Module):  # view x -> e_1, view y -> e_2, told apart by their mean pixel
        def forward(self, h: torch.Tensor) -> torch.Tensor:
            first = (h[:, :1] > 0).to(h.dtype)
            return torch.cat([first, 1 - first], dim=1)

    method.projector = Orthogonal()
    method.target_projector.module = Orthogonal()
    method.backbone = method.target_backbone.module = _MeanPixel(+1)
    views = torch.stack([torch.ones(BATCH, 3, 4, 4), -torch.ones(BATCH, 3, 4, 4)], dim=1).double()
    batch = dataclasses.replace(batch, views=views)
    assert method(batch).loss.item() == pytest.approx(4.0)


class _MeanPixel(nn.Module):
    num_features = 1

    def __init__(self, sign: int) -> None:
        super().__init__()
        self.sign = sign

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sign * x.mean(dim=(1, 2, 3))[:, None]


# ------------------------------------------------------------------------------------ EMA and schedule


def test_cosine_momentum_schedule_at_0_half_and_1() -> None:
    assert ema_momentum(0.996, 0.0, "cosine") == pytest.approx(0.996, abs=1e-15)
    assert ema_momentum(0.996, 0.5, "cosine") == pytest.approx(0.998, abs=1e-15)
    assert ema_momentum(0.996, 1.0, "cosine") == pytest.approx(1.0, abs=1e-15)
    assert ema_momentum(0.996, 0.5, "constant") == 0.996


def _hand_tau(base: float, t: float, schedule: str) -> float:
    return base if schedule == "constant" else 1 - (1 - base) * (math.cos(math.pi * t) + 1) / 2


@pytest.mark.usefixtures("stand_in_backbone")
@pytest.mark.parametrize(
    ("unit", "schedule"), [("step", "cosine"), ("epoch", "cosine"), ("step", "constant")]
)
def test_ema_target_follows_the_hand_computed_recursion(unit: str, schedule: str) -> None:
    base = 0.7  # far from 1 so that every step moves the target visibly
    method = _build("byol", ema=base, ema_unit=unit, ema_schedule=schedule)
    names = [n for n, _ in method.projector.named_parameters()] + [
        f"bb.{n}" for n, _ in method.backbone.named_parameters()
    ]

    def online() -> list[torch.Tensor]:
        return [p.detach().clone() for p in method.projector.parameters()] + [
            p.detach().clone() for p in method.backbone.parameters()
        ]

    def target() -> list[torch.Tensor]:
        return [p.detach().clone() for p in method.target_projector.parameters()] + [
            p.detach().clone() for p in method.target_backbone.parameters()
        ]

    expected = target()
    assert all(torch.equal(a, b) for a, b in zip(expected, online(), strict=True))  # starts as a copy
    bn_stats = {
        k: v.clone() for k, v in method.target_projector.module.state_dict().items() if "running" in k
    }
    total_steps, epochs, steps_per_epoch = 6, 3, 2
    gen = torch.Generator().manual_seed(5)
    for step in range(total_steps):
        with torch.no_grad():  # an "optimiser step": new online weights
            for p in [*method.projector.parameters(), *method.backbone.parameters()]:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
        epoch = step // steps_per_epoch
        method.on_step_end(StepProgress(step=step, total_steps=total_steps, epoch=epoch, epochs=epochs))
        t = step / total_steps if unit == "step" else epoch / epochs
        tau = _hand_tau(base, t, schedule)
        expected = [tau * e + (1 - tau) * o for e, o in zip(expected, online(), strict=True)]
        for name, got, want in zip(names, target(), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=f"step {step}: {name}")
        assert method.target_backbone.momentum.item() == pytest.approx(tau, abs=1e-15)
        assert method.target_projector.momentum.item() == pytest.approx(tau, abs=1e-15)
    # BatchNorm running statistics of the target are its own, not averaged.
    for key, value in method.target_projector.module.state_dict().items():
        if key in bn_stats:
            assert torch.equal(value, bn_stats[key])


@pytest.mark.usefixtures("stand_in_backbone")
def test_targets_are_frozen_and_outside_the_parameter_groups() -> None:
    method = _build("byol-cond")
    grouped = {id(p) for g in method.parameter_groups() for p in g.params}
    targets = [*method.target_backbone.parameters(), *method.target_projector.parameters()]
    assert targets and all(not p.requires_grad and id(p) not in grouped for p in targets)
    assert any(k.startswith("target_backbone.") for k in method.state_dict())  # checkpointed


# ------------------------------------------------------------------------------------------ dimensions


@pytest.mark.usefixtures("stand_in_backbone")
def test_default_dimensions_are_seq_jepa_s() -> None:
    byol = build_method(tiny_config("byol"), 4)
    proj, pred = byol.projector, byol.predictor
    assert [type(m) for m in proj] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d]
    assert (proj[0].in_features, proj[0].out_features, proj[0].bias) == (512, 2048, None)
    assert (proj[3].in_features, proj[3].out_features, proj[3].bias) == (2048, 128, None)
    assert proj[1].affine and not proj[4].affine and proj[4].num_features == 128
    assert [type(m) for m in pred] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (pred[0].in_features, pred[0].out_features, pred[0].bias) == (128, 2048, None)
    assert (pred[3].in_features, pred[3].out_features) == (2048, 128) and pred[3].bias is not None
    assert not byol.has_predictor
    with pytest.raises(UsageError, match="no predictor"):
        byol.embed_equivariant(torch.zeros(2, 512))

    cond = build_method(tiny_config("byol-cond"), 4)
    assert cond.has_predictor
    linear, norm = cond.action_embedding
    assert (linear.in_features, linear.out_features, linear.bias) == (4, 128, None)
    assert norm.num_features == 128 and not norm.affine
    assert (cond.predictor[0].in_features, cond.predictor[3].out_features) == (256, 128)


@pytest.mark.usefixtures("stand_in_backbone")
def test_dimensions_come_from_the_section() -> None:
    # 7 parameters per pair: quaternion + translation latents.
    method = build_method(_config("byol-cond", proj_hidden=40, proj_dim=16, pred_hidden=24, action_dim=6), 7)
    assert (method.projector[0].out_features, method.projector[3].out_features) == (40, 16)
    assert method.action_embedding[0].weight.shape == (6, 7)
    assert (method.predictor[0].in_features, method.predictor[0].out_features) == (6 + 16, 24)
    assert method.predictor[3].out_features == 16
    assert method.target_projector.module[3].out_features == 16


def test_projector_reads_the_backbone_width() -> None:
    cfg = tiny_config("byol", arch="convnet", small_stem=False)
    method = build_method(_config_from(cfg, BYOLConfig(**SMALL)), 4)
    assert method.repr_dim == 256 and method.projector[0].in_features == 256


def _config_from(cfg: Config, section: BYOLConfig) -> Config:
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, sections=((section.SECTION, section),))
    )


@pytest.mark.usefixtures("stand_in_backbone")
def test_byol_cond_predictor_api_with_a_batch_of_one() -> None:
    method = _build("byol-cond").eval()
    with torch.no_grad():
        h = method.backbone(torch.randn(1, 3, 16, 16, dtype=torch.float64))
        z = method.embed_equivariant(h)
        assert z.shape == (1, SMALL["proj_dim"])
        torch.testing.assert_close(z, method.projector(h))
        g = torch.randn(1, 4, dtype=torch.float64)
        expected = method.predictor(torch.cat([method.action_embedding(g), z], dim=1))
        torch.testing.assert_close(method.predict(z, g), expected)


# --------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.byol.ema=1.5", "model.byol.ema"),
        ("model.byol.ema=-0.1", "model.byol.ema"),
        ("model.byol.proj_dim=0", "model.byol.proj_dim"),
        ("model.byol.pred_hidden=-3", "model.byol.pred_hidden"),
        ("model.byol.ema_schedule=linear", "model.byol.ema_schedule"),
        ("model.byol.ema_unit=batch", "model.byol.ema_unit"),
    ],
)
def test_bad_section_values_are_refused_in_one_line(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(overrides=["model.method=byol", override])
    message = str(info.value)
    assert key in message and "\n" not in message


def test_byol_cond_section_is_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"model\.byol_cond\.action_dim=0"):
        resolve_config(overrides=["model.method=byol-cond", "model.byol_cond.action_dim=0"])
    with pytest.raises(ConfigError, match=r"model\.byol_cond\.ema=2\.0"):
        resolve_config(overrides=["model.method=byol-cond", "model.byol_cond.ema=2"])


def test_section_values_reach_the_method() -> None:
    cfg = resolve_config(overrides=["model.method=byol", "model.byol.ema=0.9", "model.byol.ema_unit=step"])
    assert cfg.model.section("byol") == BYOLConfig(ema=0.9, ema_unit="step")
    cond = resolve_config(overrides=["model.method=byol-cond", "model.byol_cond.action_dim=64"])
    assert cond.model.section("byol_cond").action_dim == 64


@pytest.mark.parametrize(
    ("method", "override", "owner"),
    [
        ("sie", "model.byol.ema=0.9", "'byol'"),
        ("byol-cond", "model.byol.ema=0.9", "'byol'"),
        ("byol", "model.byol_cond.action_dim=64", "'byol-cond'"),
    ],
)
def test_a_section_key_of_another_method_is_refused(method: str, override: str, owner: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(overrides=[f"model.method={method}", override])
    message = str(info.value)
    assert override.split("=")[0] in message and owner in message and f"model.method={method!r}" in message
