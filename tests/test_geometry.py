"""Property tests of sie.geometry, and agreement with scipy's Rotation (an independent implementation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from sie import geometry as g

DTYPES = [torch.float32, torch.float64]


def tol(dtype: torch.dtype) -> dict[str, float]:
    return {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}


def random_angles(n: int, seed: int = 0, low: float = -math.pi, high: float = math.pi) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=(n, 3))


# ---- hand-checkable cases -------------------------------------------------------------------------


def test_quarter_turn_about_z_maps_x_to_y() -> None:
    m = g.euler_xyz_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    torch.testing.assert_close(
        m @ torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0.0, 1, 0], dtype=torch.float64)
    )
    q = g.euler_xyz_to_quaternion(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    s = math.sqrt(0.5)
    torch.testing.assert_close(q, torch.tensor([0.0, 0.0, s, s], dtype=torch.float64))


def test_extrinsic_order_is_x_then_y_then_z() -> None:
    # Rotate x by 90 deg about x (no change), then about y: x -> -z; then about z: -z stays -z.
    m = g.euler_xyz_to_matrix(torch.tensor([math.pi / 2, math.pi / 2, math.pi / 2], dtype=torch.float64))
    out = m @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64), atol=1e-12, rtol=0)


def test_hamilton_product_of_basis_quaternions() -> None:
    i = torch.tensor([1.0, 0, 0, 0])
    j = torch.tensor([0.0, 1, 0, 0])
    k = torch.tensor([0.0, 0, 1, 0])
    torch.testing.assert_close(g.quaternion_multiply(i, j), k)  # ij = k
    torch.testing.assert_close(g.quaternion_multiply(j, i), -k)  # ji = -k
    torch.testing.assert_close(g.quaternion_multiply(i, i), torch.tensor([0.0, 0, 0, -1]))  # i^2 = -1


def test_geodesic_angle_of_known_rotation() -> None:
    a = torch.zeros(3, dtype=torch.float64)
    b = torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)
    angle_q = g.geodesic_angle_quaternion(g.euler_xyz_to_quaternion(a), g.euler_xyz_to_quaternion(b))
    angle_m = g.geodesic_angle_matrix(g.euler_xyz_to_matrix(a), g.euler_xyz_to_matrix(b))
    assert float(angle_q) == pytest.approx(0.3, abs=1e-12)
    assert float(angle_m) == pytest.approx(0.3, abs=1e-12)


def test_canonicalize_rules() -> None:
    q = torch.tensor([[0.1, 0.2, 0.3, -0.9], [0.0, -0.6, 0.8, 0.0], [-1.0, 0.0, 0.0, 0.0]])
    out = g.canonicalize_quaternion(q)
    torch.testing.assert_close(out[0], -q[0])
    torch.testing.assert_close(out[1], -q[1])  # w == 0: first non-zero (y) made positive
    torch.testing.assert_close(out[2], -q[2])


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        g.euler_xyz_to_matrix(torch.zeros(4))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        g.matrix_to_quaternion(torch.zeros(2, 3))


# ---- agreement with scipy ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_euler_to_matrix_and_quaternion_match_scipy(dtype: torch.dtype) -> None:
    angles = random_angles(500, seed=1)
    ours_m = g.euler_xyz_to_matrix(torch.tensor(angles, dtype=dtype))
    ours_q = g.euler_xyz_to_quaternion(torch.tensor(angles, dtype=dtype))
    ref = Rotation.from_euler("xyz", angles)
    np.testing.assert_allclose(ours_m.numpy(), ref.as_matrix(), **tol(dtype))
    # Sign included: the reference trains on scipy's raw quaternion output.
    np.testing.assert_allclose(ours_q.numpy(), ref.as_quat(), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relative_rotation_matches_reference_pipeline_including_sign(dtype: torch.dtype) -> None:
    # Exactly the reference's sampling law and its target: (rot_a.inv() * rot_b).as_quat().
    rng = np.random.default_rng(2)
    a = rng.uniform(-math.pi / 2, math.pi / 2, size=(2000, 3))
    b = rng.uniform(-math.pi / 2, math.pi / 2, size=(2000, 3))
    expected = (Rotation.from_euler("xyz", a).inv() * Rotation.from_euler("xyz", b)).as_quat()
    qa = g.euler_xyz_to_quaternion(torch.tensor(a, dtype=dtype))
    qb = g.euler_xyz_to_quaternion(torch.tensor(b, dtype=dtype))
    ours = g.relative_rotation_quaternion(qa, qb)
    np.testing.assert_allclose(ours.numpy(), expected, **tol(dtype))
    # The digest reports ~4.4% of such pairs with w < 0; a canonicalising implementation would show 0%.
    negative = float((ours[:, 3] < 0).double().mean())
    assert 0.02 < negative < 0.07
    canonical = g.relative_rotation_quaternion(qa, qb, canonical=True)
    assert bool((canonical[:, 3] >= 0).all())
    np.testing.assert_allclose(
        g.quaternion_to_matrix(canonical).numpy(), Rotation.from_quat(expected).as_matrix(), **tol(dtype)
    )
    np.testing.assert_allclose(g.relative_rotation_quaternion_np(a, b), expected, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quaternion_to_matrix_matches_scipy(dtype: torch.dtype) -> None:
    q = np.random.default_rng(3).normal(size=(300, 4))
    ours = g.quaternion_to_matrix(torch.tensor(q, dtype=dtype))
    np.testing.assert_allclose(ours.numpy(), Rotation.from_quat(q).as_matrix(), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_to_quaternion_matches_scipy_up_to_sign(dtype: torch.dtype) -> None:
    ref = Rotation.random(400, random_state=4)
    # Include rotations near pi, where the naive trace formula fails.
    near_pi = Rotation.from_rotvec(np.random.default_rng(5).normal(size=(50, 3)) * 0 + [math.pi - 1e-7, 0, 0])
    mats = np.concatenate([ref.as_matrix(), near_pi.as_matrix()])
    expected = Rotation.from_matrix(mats).as_quat(canonical=True)
    ours = g.matrix_to_quaternion(torch.tensor(mats, dtype=dtype)).numpy()
    # Both sides canonical (w >= 0); where w ~ 0 the sign is a tie, so compare rotation-invariantly too.
    assert np.abs(np.abs((ours * expected).sum(-1)) - 1).max() < (1e-5 if dtype == torch.float32 else 1e-10)
    np.testing.assert_allclose(ours[:400], expected[:400], **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_to_euler_matches_scipy(dtype: torch.dtype) -> None:
    angles = random_angles(500, seed=6)
    angles[:, 1] /= 2.0  # keep a_y inside (-pi/2, pi/2), away from gimbal lock
    mats = Rotation.from_euler("xyz", angles).as_matrix()
    ours = g.matrix_to_euler_xyz(torch.tensor(mats, dtype=dtype)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_matrix(mats).as_euler("xyz"), **tol(dtype))


def test_matrix_to_euler_at_gimbal_lock_reconstructs_the_rotation() -> None:
    angles = np.array([[0.4, math.pi / 2, -0.3], [1.0, -math.pi / 2, 0.2]])
    mats = torch.tensor(Rotation.from_euler("xyz", angles).as_matrix())
    back = g.euler_xyz_to_matrix(g.matrix_to_euler_xyz(mats))
    torch.testing.assert_close(back, mats, atol=1e-7, rtol=0)


# ---- properties ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trips(dtype: torch.dtype) -> None:
    angles = torch.tensor(random_angles(300, seed=7), dtype=dtype)
    m = g.euler_xyz_to_matrix(angles)
    q = g.euler_xyz_to_quaternion(angles)
    torch.testing.assert_close(g.quaternion_to_matrix(q), m, **tol(dtype))
    torch.testing.assert_close(g.quaternion_to_matrix(g.matrix_to_quaternion(m)), m, **tol(dtype))
    torch.testing.assert_close(g.euler_xyz_to_matrix(g.matrix_to_euler_xyz(m)), m, **tol(dtype))
    torch.testing.assert_close(
        g.matrix_to_quaternion(g.quaternion_to_matrix(q)), g.canonicalize_quaternion(q), **tol(dtype)
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_composition_equals_matrix_product(dtype: torch.dtype) -> None:
    q1 = g.euler_xyz_to_quaternion(torch.tensor(random_angles(200, seed=8), dtype=dtype))
    q2 = g.euler_xyz_to_quaternion(torch.tensor(random_angles(200, seed=9), dtype=dtype))
    torch.testing.assert_close(
        g.quaternion_to_matrix(g.quaternion_multiply(q1, q2)),
        g.quaternion_to_matrix(q1) @ g.quaternion_to_matrix(q2),
        **tol(dtype),
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_relative_of_itself_is_identity_and_relative_composes(dtype: torch.dtype) -> None:
    qa = g.euler_xyz_to_quaternion(torch.tensor(random_angles(100, seed=10), dtype=dtype))
    qb = g.euler_xyz_to_quaternion(torch.tensor(random_angles(100, seed=11), dtype=dtype))
    identity = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dtype).expand(100, 4)
    torch.testing.assert_close(g.relative_rotation_quaternion(qa, qa), identity, **tol(dtype))
    # R_b = R_a (R_a^-1 R_b), for both representations.
    rel_q = g.relative_rotation_quaternion(qa, qb)
    torch.testing.assert_close(g.quaternion_multiply(qa, rel_q), qb, **tol(dtype))
    ma, mb = g.quaternion_to_matrix(qa), g.quaternion_to_matrix(qb)
    torch.testing.assert_close(
        g.relative_rotation_matrix(ma, mb), g.quaternion_to_matrix(rel_q), **tol(dtype)
    )
    torch.testing.assert_close(g.quaternion_multiply(qa, g.quaternion_inverse(qa)), identity, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_geodesic_angle_is_sign_invariant_symmetric_and_matches_scipy(dtype: torch.dtype) -> None:
    qa = g.euler_xyz_to_quaternion(torch.tensor(random_angles(300, seed=12), dtype=dtype))
    qb = g.euler_xyz_to_quaternion(torch.tensor(random_angles(300, seed=13), dtype=dtype))
    angle = g.geodesic_angle_quaternion(qa, qb)
    torch.testing.assert_close(angle, g.geodesic_angle_quaternion(-qa, qb), **tol(dtype))
    torch.testing.assert_close(angle, g.geodesic_angle_quaternion(qb, qa), **tol(dtype))
    expected = (
        Rotation.from_quat(qa.double().numpy()).inv() * Rotation.from_quat(qb.double().numpy())
    ).magnitude()
    np.testing.assert_allclose(angle.numpy(), expected, atol=1e-4 if dtype == torch.float32 else 1e-10)
    angle_m = g.geodesic_angle_matrix(g.quaternion_to_matrix(qa), g.quaternion_to_matrix(qb))
    np.testing.assert_allclose(angle_m.numpy(), expected, atol=1e-4 if dtype == torch.float32 else 1e-10)
    assert float(angle.min()) >= 0 and float(angle.max()) <= math.pi + 1e-6


def test_dtype_device_and_broadcasting_are_preserved() -> None:
    angles = torch.zeros(2, 5, 3, dtype=torch.float32)
    assert g.euler_xyz_to_matrix(angles).shape == (2, 5, 3, 3)
    assert g.euler_xyz_to_quaternion(angles).dtype == torch.float32
    q = g.euler_xyz_to_quaternion(torch.zeros(5, 3))
    assert g.quaternion_multiply(q[:1], q).shape == (5, 4)


def test_numpy_wrappers_match_torch() -> None:
    angles = random_angles(20, seed=14)
    np.testing.assert_allclose(
        g.euler_xyz_to_matrix_np(angles), Rotation.from_euler("xyz", angles).as_matrix(), atol=1e-12
    )
    np.testing.assert_allclose(
        g.euler_xyz_to_quaternion_np(angles), Rotation.from_euler("xyz", angles).as_quat(), atol=1e-12
    )


def test_numpy_euler_matrix_is_the_torch_convention() -> None:
    from sie.geometry_np import euler_xyz_to_matrix_np

    angles = np.random.default_rng(3).uniform(-np.pi, np.pi, size=(2, 5, 3))
    expected = g.euler_xyz_to_matrix(torch.as_tensor(angles)).numpy()
    np.testing.assert_allclose(euler_xyz_to_matrix_np(angles), expected, atol=1e-12)
    # By hand: a quarter turn about z maps x to y.
    np.testing.assert_allclose(euler_xyz_to_matrix_np([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        euler_xyz_to_matrix_np(np.zeros((4, 2)))


def test_render_workers_do_not_import_torch() -> None:
    # Importing PyTorch costs a render worker ~2 s of start-up for nothing it uses.
    pytest.importorskip("warp")
    import subprocess
    import sys

    code = (
        "import sys, sie.render.generator, sie.render.backends.warp_backend, sie.render.sources, "
        "sie.render.meshio, sie.render.writer; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"
