"""Every method's loss equals the reference formula written out here with plain loops (float64).

The backbone is a cheap stand-in mapping images to 512 dims (the real backbones are tested in
tests/nn); projectors and predictors are the method's own modules (tested separately), and every
loss term and its weighting is recomputed independently from the SIE paper and facebookresearch/SIE Coefficients are
set away from their defaults so a misplaced weight cannot cancel out.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tests.methods.plain import (
    plain_covariance,
    plain_cross_entropy,
    plain_hypernetwork,
    plain_info_nce,
    plain_mse,
    plain_variance,
    random_batch,
    tiny_config,
)

from sie.config import Config
from sie.methods import build_method
from sie.methods.base import Method

SIM, STD, COV, EQUI_FACTOR, EC, TEMP = 2.0, 3.0, 0.7, 0.3, 1.7, 0.2
BATCH = 6

pytestmark = pytest.mark.usefixtures("stand_in_backbone")


def _build(name: str, batch_size: int = BATCH, **model: object) -> tuple[Method, Config]:
    torch.manual_seed(0)
    cfg = tiny_config(
        name,
        sim_coeff=SIM,
        std_coeff=STD,
        cov_coeff=COV,
        equi_factor=EQUI_FACTOR,
        ec_weight=EC,
        simclr_temp=TEMP,
    )
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, **model),
        train=dataclasses.replace(cfg.train, batch_size=batch_size),
    )
    method = build_method(cfg, 6 if cfg.data.transform == "rotcolor" else 4)
    return method.double(), cfg


def _run(method: Method) -> tuple[float, dict[str, float], torch.Tensor, torch.Tensor, torch.Tensor]:
    batch = random_batch(BATCH, method.transform_dim, size=4, seed=1, dtype=torch.float64)
    out = method(batch)
    with torch.no_grad():
        h_x, h_y = method.backbone(batch.x), method.backbone(batch.y)
    return out.loss.item(), {k: v.item() for k, v in out.terms.items()}, h_x, h_y, batch.pair_transform


def _vicreg_reg(z_x: torch.Tensor, z_y: torch.Tensor, denominator: float | None) -> tuple[float, float]:
    std = plain_variance(z_x) / 2 + plain_variance(z_y) / 2
    cov = plain_covariance(z_x, denominator) + plain_covariance(z_y, denominator)
    return std, cov


@pytest.mark.parametrize(
    ("name", "batch_size", "cov_denominator"),
    [
        ("sie", BATCH, "batch_size"),
        ("sie", 1024, "batch_size"),
        ("sie", 1024, "gathered"),
        ("sie-rotcolor", BATCH, "batch_size"),
    ],
)
def test_sie_loss(name: str, batch_size: int, cov_denominator: str) -> None:
    method, _ = _build(name, batch_size, cov_denominator=cov_denominator)
    loss, terms, h_x, h_y, g = _run(method)
    split = 512 - 256
    with torch.no_grad():
        zi_x, zi_y = method.projector_inv(h_x[:, :split]), method.projector_inv(h_y[:, :split])
        ze_x, ze_y = method.projector_equi(h_x[:, split:]), method.projector_equi(h_y[:, split:])
        pred = plain_hypernetwork(method.predictor, ze_x, g)
    denominator = None if cov_denominator == "gathered" else batch_size - 1
    inv, equi = plain_mse(zi_x, zi_y), plain_mse(pred, ze_y)
    std, cov = _vicreg_reg(torch.cat([zi_x, ze_x], 1), torch.cat([zi_y, ze_y], 1), denominator)
    pred_std = plain_variance(pred) / 2
    expected = SIM * inv + EQUI_FACTOR * SIM * equi + STD * std + STD * pred_std + COV * cov
    assert loss == pytest.approx(expected, rel=1e-5)
    assert terms == pytest.approx(
        {"loss/inv": inv, "loss/equi": equi, "loss/std": std, "loss/cov": cov, "loss/pred_std": pred_std},
        rel=1e-5,
    )


def test_sie_novar_loss_drops_only_the_predictor_variance() -> None:
    method, _ = _build("sie-novar")
    loss, terms, *_ = _run(method)
    assert "loss/pred_std" not in terms
    expected = (
        SIM * terms["loss/inv"]
        + EQUI_FACTOR * SIM * terms["loss/equi"]
        + STD * terms["loss/std"]
        + COV * terms["loss/cov"]
    )
    assert loss == pytest.approx(expected, rel=1e-5)
    reference, _ = _build("sie")
    assert _run(reference)[1]["loss/equi"] == pytest.approx(
        terms["loss/equi"], rel=1e-5
    )  # same model otherwise


@pytest.mark.parametrize("everywhere", [False, True])
def test_sie_onlyequi_loss(everywhere: bool) -> None:
    method, _ = _build("sie-onlyequi", equi_factor_everywhere=everywhere)
    loss, terms, h_x, h_y, g = _run(method)
    with torch.no_grad():
        z_x, z_y = method.projector_equi(h_x), method.projector_equi(h_y)
        pred = plain_hypernetwork(method.predictor, z_x, g)
    assert method.projector_equi[0].in_features == 512
    equi = plain_mse(pred, z_y)
    std, cov = _vicreg_reg(z_x, z_y, BATCH - 1)
    weight = SIM * (EQUI_FACTOR if everywhere else 1.0)  # the reference ignores equi_factor here
    expected = weight * equi + STD * std + STD * plain_variance(pred) / 2 + COV * cov
    assert loss == pytest.approx(expected, rel=1e-5)
    assert set(terms) == {"loss/equi", "loss/std", "loss/cov", "loss/pred_std"}


@pytest.mark.parametrize("name", ["vicreg", "vicreg-partinv"])
def test_vicreg_loss(name: str) -> None:
    method, cfg = _build(name)
    loss, terms, h_x, h_y, _ = _run(method)
    with torch.no_grad():
        z_x, z_y = method.projector(h_x), method.projector(h_y)
    keep = 32 - cfg.model.equi if name == "vicreg-partinv" else 32
    inv = plain_mse(z_x[:, :keep], z_y[:, :keep])
    std, cov = _vicreg_reg(z_x, z_y, BATCH - 1)
    assert loss == pytest.approx(SIM * inv + STD * std + COV * cov, rel=1e-5)
    assert terms == pytest.approx({"loss/inv": inv, "loss/std": std, "loss/cov": cov}, rel=1e-5)


@pytest.mark.parametrize("name", ["simclr", "augself"])
def test_simclr_and_augself_loss(name: str) -> None:
    method, _ = _build(name)
    loss, terms, h_x, h_y, g = _run(method)
    with torch.no_grad():
        nce = plain_info_nce(method.projector(h_x), method.projector(h_y), TEMP)
        expected = nce
        if name == "augself":
            regression = method.augself.net(torch.cat([h_x, h_y], 1))
            expected += EC * plain_mse(regression, g)
    assert terms["loss/nce"] == pytest.approx(nce, rel=1e-5)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_simclr_onlyequi_loss() -> None:
    method, _ = _build("simclr-onlyequi")
    loss, _, h_x, h_y, g = _run(method)
    with torch.no_grad():
        pred = plain_hypernetwork(method.predictor, method.projector_equi(h_x), g)
        expected = plain_info_nce(pred, method.projector_equi(h_y), TEMP)
    assert loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("transform", "everywhere"), [("quat", False), ("rotcolor", False), ("rotcolor", True)]
)
def test_equimod_simclr_loss(transform: str, everywhere: bool) -> None:
    method, cfg = _build("equimod", equi_factor_everywhere=everywhere)
    if transform == "rotcolor":  # SimCLREquiModRotColor: same model with 6 parameters
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, transform="rotcolor"))
        torch.manual_seed(0)
        method = build_method(cfg, 6).double()
    loss, _, h_x, h_y, g = _run(method)
    with torch.no_grad():
        inv = plain_info_nce(method.projector_inv(h_x), method.projector_inv(h_y), TEMP)
        pred = plain_hypernetwork(method.predictor, method.projector_equi(h_x), g)
        equi = plain_info_nce(pred, method.projector_equi(h_y), TEMP)
    weight = 1.0 if transform == "rotcolor" and not everywhere else EQUI_FACTOR
    assert loss == pytest.approx(inv + weight * equi, rel=1e-5)


def test_equimod_vicreg_loss() -> None:
    method, _ = _build("equimod-vicreg")
    loss, _, h_x, h_y, g = _run(method)
    with torch.no_grad():
        zi_x, zi_y = method.projector_inv(h_x), method.projector_inv(h_y)
        ze_x, ze_y = method.projector_equi(h_x), method.projector_equi(h_y)
        pred = plain_hypernetwork(method.predictor, ze_x, g)
    std_i, cov_i = _vicreg_reg(zi_x, zi_y, BATCH - 1)
    std_e, cov_e = _vicreg_reg(ze_x, ze_y, BATCH - 1)  # on the projector outputs, not the prediction
    invariant_part = SIM * plain_mse(zi_x, zi_y) + STD * std_i + COV * cov_i
    equivariant_part = SIM * plain_mse(pred, ze_y) + STD * std_e + COV * cov_e
    assert loss == pytest.approx(invariant_part + EQUI_FACTOR * equivariant_part, rel=1e-5)


def test_supervised_loss() -> None:
    method, _ = _build("supervised")
    batch = random_batch(BATCH, 4, size=4, seed=1, dtype=torch.float64)
    out = method(batch)
    with torch.no_grad():
        logits = method.classifier(method.backbone(torch.cat([batch.x, batch.y])))
    expected = plain_cross_entropy(logits, torch.cat([batch.labels, batch.labels]))
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["sie", "simclr-onlyequi", "equimod-vicreg"])
def test_mlp_predictor_variant(name: str) -> None:
    method, _ = _build(name, predictor_type="mlp", tf_num_layers=2)
    loss, _, h_x, _, g = _run(method)
    with torch.no_grad():
        z = method.embed_equivariant(h_x)
        first, _, second = method.predictor.net
        expected = second(torch.relu(first(torch.cat([g, z], 1))))  # parameters first
        torch.testing.assert_close(method.predict(z, g), expected)
    assert torch.isfinite(torch.tensor(loss))


def test_factorized_and_materialized_hypernetworks_give_the_same_loss() -> None:
    losses = []
    for implementation in ("factorized", "materialized"):
        method, _ = _build(
            "sie", hypernetwork_impl=implementation, predictor="12", bias_pred=True, predictor_relu=True
        )
        losses.append(_run(method)[0])
    assert losses[0] == pytest.approx(losses[1], rel=1e-10)
