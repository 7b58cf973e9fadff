"""EquiCaps: loss by hand and against a plain loop, the pose target's convention (3x3 and SE(3)), refusals."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from tests.methods.plain import plain_covariance, plain_variance, random_batch, rows, tiny_config

from sie.config import Config
from sie.data.batch import Batch
from sie.data.targets import relative_se3, relative_transforms, transform_dim
from sie.errors import ConfigError
from sie.geometry import euler_xyz_to_matrix
from sie.methods import build_method
from sie.methods.equicaps import EquiCapsConfig, equicaps_loss, frobenius_normalize


def _equicaps(
    pose: str = "3x3", frame: str = "object", root: str = "", transform: str = "quat", capsules: int = 4
) -> Config:
    cfg = tiny_config("equicaps")
    section = EquiCapsConfig(capsules=capsules, pose=pose, frame=frame)  # type: ignore[arg-type]
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, sections=(("equicaps", section),)),
        data=dataclasses.replace(cfg.data, root=root, transform=transform),  # type: ignore[arg-type]
    )


def plain_equicaps_terms(
    a_x: torch.Tensor, a_y: torch.Tensor, u_x: torch.Tensor, u_y: torch.Tensor, g: torch.Tensor, denom: float
) -> dict[str, float]:
    """The reference's formulas element by element (float64 Python loops)."""
    ax, ay = rows(a_x), rows(a_y)
    n, k = len(ax), len(ax[0])
    s = g.shape[-1]
    ux, uy, gg = u_x.double().tolist(), u_y.double().tolist(), g.double().tolist()
    ce = sum(-ay[i][j] * math.log(ax[i][j]) for i in range(n) for j in range(k)) / n
    memax = 0.0
    for acts in (ax, ay):
        mean = [sum(acts[i][j] for i in range(n)) / n for j in range(k)]
        memax += math.log(k) + sum(m * math.log(m) for m in mean)
    flat_x, flat_y, sq = [], [], 0.0
    for i in range(n):
        row_x, row_y = [], []
        for c in range(k):
            prod = [
                [sum(ux[i][c][r][t] * gg[i][t][col] for t in range(s)) for col in range(s)] for r in range(s)
            ]
            norm_x = math.sqrt(sum(v * v for r in prod for v in r))
            norm_y = math.sqrt(sum(v * v for r in uy[i][c] for v in r))
            for r in range(s):
                for col in range(s):
                    vx, vy = prod[r][col] / norm_x, uy[i][c][r][col] / norm_y
                    sq += (vx - vy) ** 2
                    row_x.append(vx)
                    row_y.append(vy)
        flat_x.append(ax[i] + row_x)
        flat_y.append(ay[i] + row_y)
    zx, zy = torch.tensor(flat_x, dtype=torch.float64), torch.tensor(flat_y, dtype=torch.float64)
    return {
        "loss/inv": ce,
        "loss/memax": memax,
        "loss/equi": sq / (n * k * s * s),
        "loss/std": plain_variance(zx) / 2 + plain_variance(zy) / 2,
        "loss/cov": plain_covariance(zx, denom) + plain_covariance(zy, denom),
    }


@pytest.mark.parametrize("side", [3, 4])
def test_loss_against_the_plain_formulas(side: int) -> None:
    gen = torch.Generator().manual_seed(side)
    n, k = 6, 5
    a_x = torch.softmax(torch.randn(n, k, generator=gen, dtype=torch.float64), dim=1)
    a_y = torch.softmax(torch.randn(n, k, generator=gen, dtype=torch.float64), dim=1)
    u_x = torch.randn(n, k, side, side, generator=gen, dtype=torch.float64)
    u_y = torch.randn(n, k, side, side, generator=gen, dtype=torch.float64)
    g = torch.randn(n, side, side, generator=gen, dtype=torch.float64)
    terms = equicaps_loss(a_x, a_y, u_x, u_y, g, cov_denominator=7.0)
    plain = plain_equicaps_terms(a_x, a_y, u_x, u_y, g, 7.0)
    assert set(terms) == set(plain)
    for name, value in plain.items():
        assert float(terms[name]) == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_loss_by_hand() -> None:
    # Uniform activations on view a, one-hot (over two samples) on view b: cross-entropy log 2; both
    # batch means are uniform, so MEMAX is 0. Poses 2 I on view a, 5 R on view b, transform R: after
    # Frobenius normalisation both sides are R / sqrt(3), so the pose term is 0.
    rot = euler_xyz_to_matrix(torch.tensor([0.3, -0.2, 1.1], dtype=torch.float64))
    a_x = torch.full((2, 2), 0.5, dtype=torch.float64)
    a_y = torch.eye(2, dtype=torch.float64)
    u_x = 2 * torch.eye(3, dtype=torch.float64).expand(2, 2, 3, 3)
    u_y = 5 * rot.expand(2, 2, 3, 3)
    terms = equicaps_loss(a_x, a_y, u_x, u_y, rot.expand(2, 3, 3), None)
    assert float(terms["loss/inv"]) == pytest.approx(math.log(2))
    assert float(terms["loss/memax"]) == pytest.approx(0.0, abs=1e-12)
    assert float(terms["loss/equi"]) == pytest.approx(0.0, abs=1e-12)
    # A 90-degree turn about z instead: entries of R/sqrt(3) vs I/sqrt(3) differ on 4 of 9 entries per
    # matrix. I - Rz(90) has squared Frobenius norm 2 * 3 - 2 * trace(Rz) = 6 - 2 = 4 -> mean 4 / 3 / 9.
    rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    terms = equicaps_loss(
        a_x, a_y, u_x, 5 * torch.eye(3, dtype=torch.float64).expand(2, 2, 3, 3), rz.expand(2, 3, 3), None
    )
    assert float(terms["loss/equi"]) == pytest.approx(4 / 3 / 9)
    torch.testing.assert_close(
        torch.linalg.matrix_norm(frobenius_normalize(torch.randn(4, 3, 3))), torch.ones(4)
    )


def _latents(n: int, size: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    lat = rng.uniform(0, 1, (n, 2, size))
    lat[..., :3] = rng.uniform(-math.pi / 2, math.pi / 2, (n, 2, 3))
    if size == 10:
        lat[..., 7:] = rng.uniform(-0.5, 0.5, (n, 2, 3))
    return torch.from_numpy(lat.astype(np.float32))


def test_pose_target_follows_the_project_rotation_convention() -> None:
    # The batch's quaternion parameters are R_a^-1 R_b (sie.geometry); the 3x3 target turns a pose that
    # follows the object (P = C R, C fixed per capsule) at view a into the same capsule's pose at view b.
    method = build_method(_equicaps(), 4)
    lat = _latents(5, 7, 0)
    batch = Batch(
        views=torch.zeros(5, 2, 3, 16, 16),
        transforms=relative_transforms(lat, "quat"),
        labels=torch.zeros(5).long(),
    )
    g = method.relative_transform(batch).double()
    rot = euler_xyz_to_matrix(lat[..., :3].double())
    torch.testing.assert_close(rot[:, 0] @ g, rot[:, 1], rtol=1e-5, atol=1e-5)
    c = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    poses_a, poses_b = c @ rot[:, 0, None], c @ rot[:, 1, None]
    terms = equicaps_loss(torch.full((5, 4), 0.25), torch.full((5, 4), 0.25), poses_a, poses_b, g, None)
    assert float(terms["loss/equi"]) < 1e-10
    # The left multiplication (the other convention) does not: the test can fail.
    wrong = equicaps_loss(
        torch.full((5, 4), 0.25), torch.full((5, 4), 0.25), poses_a, poses_b, g.transpose(1, 2), None
    )
    assert float(wrong["loss/equi"]) > 1e-3


@pytest.mark.parametrize("frame", ["object", "base"])
def test_se3_targets_by_formula(frame: str) -> None:
    lat = _latents(4, 10, 1).double()
    rel = relative_se3(lat, frame, dtype=torch.float64)[:, 0]
    for i in range(4):
        ra = euler_xyz_to_matrix(lat[i, 0, :3])
        rb = euler_xyz_to_matrix(lat[i, 1, :3])
        ta, tb = lat[i, 0, 7:], lat[i, 1, 7:]
        expected = torch.eye(4, dtype=torch.float64)
        expected[:3, :3] = ra.T @ rb
        # object frame M = T R: M_a^-1 M_b = [R_a^T R_b, R_a^T (t_b - t_a)]
        # base frame   M = R T: M_a^-1 M_b = [R_a^T R_b, R_a^T R_b t_b - t_a]
        expected[:3, 3] = ra.T @ (tb - ta) if frame == "object" else ra.T @ rb @ tb - ta
        torch.testing.assert_close(rel[i], expected)


def test_se3_method_trains_on_translation_latents() -> None:
    tdim = transform_dim("quat", 10)
    method = build_method(_equicaps("4x4", "base"), tdim)
    lat = _latents(4, 10, 2)
    batch = Batch(
        views=torch.randn(4, 2, 3, 16, 16),
        transforms=relative_transforms(lat, "quat"),
        labels=torch.zeros(4).long(),
        latents=lat,
    )
    torch.testing.assert_close(method.relative_transform(batch), relative_se3(lat, "base")[:, 0])
    out = method(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and method.projector.routing.vote_weight.shape[1] == 4 * 16
    no_latents = Batch(views=batch.views, transforms=batch.transforms, labels=batch.labels)
    with pytest.raises(ValueError, match="10-value latents"):
        method(no_latents)


def test_refusals_name_the_setting_and_the_dataset() -> None:
    with pytest.raises(
        ConfigError, match=r"model.equicaps.pose='4x4' needs translations, but dataset /data/3die has none"
    ):
        build_method(_equicaps("4x4", root="/data/3die"), 4)
    with pytest.raises(ConfigError, match=r"data.transform='euler'"):
        build_method(_equicaps(transform="euler"), 3)
    with pytest.raises(ConfigError, match=r"model.equicaps.capsules=0"):
        build_method(_equicaps(capsules=0), 4)


def test_default_settings_are_the_published_ones() -> None:
    method = build_method(tiny_config("equicaps"), 4)
    o = method.opts
    assert (o.capsules, o.pose, o.sim_coeff, o.equi_factor, o.std_coeff, o.cov_coeff) == (
        32,
        "3x3",
        0.1,
        5.0,
        10.0,
        1.0,
    )
    out = method(random_batch(4, 4))
    # Routing starts uniform: every view's activations are 1/K, so the cross-entropy is log K.
    assert float(out.terms["loss/inv"]) == pytest.approx(math.log(32), rel=1e-5)
