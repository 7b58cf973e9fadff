"""CapsIE: the invariance objective by hand and against a plain loop, the temperature schedule, the full loss
against its terms and the SIE predictor, refusals."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tests.methods.plain import plain_hypernetwork, plain_mse, random_batch, rows, tiny_config

from sie.config import Config
from sie.errors import ConfigError
from sie.methods import StepProgress, build_method
from sie.methods.capsie import CapsIEConfig, capsie_invariance, scheduled_temperature


def _capsie(root: str = "", **section: object) -> Config:
    cfg = tiny_config("capsie")
    options: dict[str, object] = {"capsules": 4, "width": 16}
    options.update(section)
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, sections=(("capsie", CapsIEConfig(**options)),)),  # type: ignore[arg-type]
        data=dataclasses.replace(cfg.data, root=root),
    )


def plain_sharpen(row: list[float], temperature: float) -> list[float]:
    powered = [v ** (1 / temperature) for v in row]
    return [v / sum(powered) for v in powered]


def plain_invariance(
    a_x: torch.Tensor, a_y: torch.Tensor, t_anchor: float, t_target: float
) -> tuple[float, float]:
    ax, ay = rows(a_x), rows(a_y)
    n, k = len(ax), len(ax[0])
    inv, memax = 0.0, 0.0
    for anchors, targets in ((ax, ay), (ay, ax)):
        sharp_anchor = [plain_sharpen(r, t_anchor) for r in anchors]
        sharp_target = [plain_sharpen(r, t_target) for r in targets]
        inv += (
            sum(-sharp_target[i][j] * math.log(sharp_anchor[i][j]) for i in range(n) for j in range(k))
            / n
            / 2
        )
        mean = [sum(sharp_anchor[i][j] for i in range(n)) / n for j in range(k)]
        memax += math.log(k) + sum(m * math.log(m) for m in mean)
    return inv, memax


def test_invariance_against_the_plain_formulas() -> None:
    gen = torch.Generator().manual_seed(0)
    a_x = torch.softmax(torch.randn(5, 4, generator=gen, dtype=torch.float64), dim=1)
    a_y = torch.softmax(torch.randn(5, 4, generator=gen, dtype=torch.float64), dim=1)
    inv, memax = capsie_invariance(a_x, a_y, 0.1, 0.05)
    plain_inv, plain_memax = plain_invariance(a_x, a_y, 0.1, 0.05)
    assert float(inv) == pytest.approx(plain_inv, rel=1e-9)
    assert float(memax) == pytest.approx(plain_memax, rel=1e-9, abs=1e-12)


def test_invariance_by_hand_and_targets_carry_no_gradient() -> None:
    # Uniform activations stay uniform at any temperature: cross-entropy log K, batch mean uniform.
    uniform = torch.full((3, 4), 0.25)
    inv, memax = capsie_invariance(uniform, uniform, 0.1, 0.025)
    assert float(inv) == pytest.approx(math.log(4)) and float(memax) == pytest.approx(0.0, abs=1e-6)
    # (0.2, 0.8) at T = 0.5 is (1/17, 16/17); against itself at T = 1 the cross-entropy is
    # -(0.2 log(1/17) + 0.8 log(16/17)).
    a = torch.tensor([[0.2, 0.8]])
    inv, _ = capsie_invariance(a, a, 0.5, 1.0)
    assert float(inv) == pytest.approx(-(0.2 * math.log(1 / 17) + 0.8 * math.log(16 / 17)), rel=1e-6)
    # Only the anchor path carries gradient: the same gradient as the anchor terms alone.
    gen = torch.Generator().manual_seed(1)
    a_x = torch.softmax(torch.randn(4, 3, generator=gen, dtype=torch.float64), dim=1).requires_grad_()
    a_y = torch.softmax(torch.randn(4, 3, generator=gen, dtype=torch.float64), dim=1).requires_grad_()
    capsie_invariance(a_x, a_y, 0.1, 0.025)[0].backward()
    expected_x = torch.autograd.grad(
        capsie_invariance(a_x, a_y.detach(), 0.1, 0.025)[0], a_x, retain_graph=True
    )[0]
    torch.testing.assert_close(a_x.grad, expected_x)


def test_temperature_schedule_known_values_and_resume() -> None:
    # The published target schedule 0.025 -> 0.1 over 1.25 x the steps ends at 0.085.
    assert scheduled_temperature(0.025, 0.1, 0.0, 1.25) == pytest.approx(0.025)
    assert scheduled_temperature(0.025, 0.1, 0.5, 1.25) == pytest.approx(0.055)
    assert scheduled_temperature(0.025, 0.1, 1.0, 1.25) == pytest.approx(0.085)
    method = build_method(tiny_config("capsie"), 4)
    assert method.temperatures() == pytest.approx((0.1, 0.025))
    method.on_step_end(StepProgress(step=4, total_steps=10, epoch=0, epochs=1))
    assert method.temperatures() == pytest.approx((0.1, 0.055))
    resumed = build_method(tiny_config("capsie"), 4)
    assert resumed.temperatures() == pytest.approx((0.1, 0.025))  # its host copy is now set
    resumed.load_state_dict(method.state_dict())  # ... and must be read again
    assert resumed.temperatures() == pytest.approx((0.1, 0.055))


def test_loss_is_the_weighted_terms_and_the_prediction_is_the_sie_hypernetwork() -> None:
    torch.manual_seed(0)
    method = build_method(_capsie(), 4).double()
    batch = random_batch(5, 4, dtype=torch.float64)
    out = method(batch)
    o = method.opts
    t = {k: float(v) for k, v in out.terms.items()}
    expected = (
        o.sim_coeff * t["loss/inv"]
        + o.memax_coeff * t["loss/memax"]
        + o.equi_factor * o.sim_coeff * t["loss/equi"]
        + o.std_coeff * (t["loss/std"] + t["loss/pred_std"])
        + o.cov_coeff * t["loss/cov"]
    )
    assert float(out.loss.detach()) == pytest.approx(expected, rel=1e-6)  # the output loss is float32
    with torch.no_grad():
        _, _, z_x = method.encode(batch.x)
        _, _, z_y = method.encode(batch.y)
        plain_prediction = plain_hypernetwork(method.predictor, z_x, batch.pair_transform)
    assert z_x.shape == (5, 16)
    assert t["loss/equi"] == pytest.approx(plain_mse(plain_prediction, z_y), rel=1e-6)


def test_defaults_are_the_published_ones_and_refusals() -> None:
    method = build_method(tiny_config("capsie"), 4)
    o = method.opts
    assert (o.capsules, o.width, o.sim_coeff, o.equi_factor, o.std_coeff, o.cov_coeff) == (
        16,
        256,
        10.0,
        0.45,
        10.0,
        1.0,
    )
    assert method.projector.pose_dims == 16 and method.predictor.dim == 256
    with pytest.raises(
        ConfigError,
        match=r"model.capsie.capsules=5 does not divide model.capsie.width=256 .* dataset /data/x",
    ):
        build_method(_capsie(root="/data/x", capsules=5, width=256), 4)
    with pytest.raises(ConfigError, match="temperature_stretch"):
        build_method(_capsie(temperature_stretch=0.5), 4)
