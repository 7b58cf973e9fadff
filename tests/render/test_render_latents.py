"""Latent sampling laws (3DIEBench, -T, -OOD, custom ranges) and orbit grids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sie.errors import ConfigError
from sie.render.latents import FACTORS, FactorRanges, latent_size, orbit_latents, sample_latents


def _draw(variant: str, n: int = 4000, ranges: FactorRanges | None = None) -> np.ndarray:
    return sample_latents(np.random.default_rng(0), n, variant, ranges or FactorRanges())


def test_base_latents_follow_3diebench_laws() -> None:
    lat = _draw("base")
    assert lat.shape == (4000, 7) and lat.dtype == np.float64
    bounds = [(-math.pi / 2, math.pi / 2)] * 3 + [(0, 1), (0, math.pi / 4), (0, 2 * math.pi), (0, 1)]
    for k, (lo, hi) in enumerate(bounds):
        assert lat[:, k].min() >= lo and lat[:, k].max() <= hi
        # Uniform: the sample fills the range (both ends within 2 % of its width) with the right mean.
        assert lat[:, k].min() - lo < 0.02 * (hi - lo) and hi - lat[:, k].max() < 0.02 * (hi - lo)
        assert lat[:, k].mean() == pytest.approx((lo + hi) / 2, abs=0.03 * (hi - lo))


def test_t_variant_appends_translations() -> None:
    lat = _draw("T")
    assert lat.shape[1] == 10 == latent_size("T")
    assert lat[:, 7:].min() >= -0.5 and lat[:, 7:].max() <= 0.5 and abs(lat[:, 7:].mean()) < 0.02


def test_ood_angles_are_outside_the_training_range_with_both_signs() -> None:
    lat = _draw("OOD")
    angles = lat[:, :3]
    assert lat.shape[1] == 7
    assert (np.abs(angles) >= math.pi / 2).all() and (np.abs(angles) <= math.pi).all()
    assert 0.45 < (angles > 0).mean() < 0.55


def test_custom_ranges_and_pinned_factor() -> None:
    ranges = FactorRanges(rotation=(-0.1, 0.2), floor_hue=(0.25, 0.25), spot_theta=(0.0, 0.0))
    lat = _draw("base", 500, ranges)
    assert lat[:, :3].min() >= -0.1 and lat[:, :3].max() <= 0.2
    np.testing.assert_array_equal(lat[:, 3], 0.25)
    np.testing.assert_array_equal(lat[:, 4], 0.0)
    with pytest.raises(ConfigError, match=r"render.rotation_range"):
        FactorRanges(rotation=(1.0, -1.0)).check()


def test_first_views_do_not_depend_on_view_count_and_seed_decides_everything() -> None:
    short = sample_latents(np.random.default_rng(7), 3)
    long = sample_latents(np.random.default_rng(7), 10)
    np.testing.assert_array_equal(short, long[:3])
    assert not np.array_equal(long, sample_latents(np.random.default_rng(8), 10))


@pytest.mark.parametrize("factor", ["rot_y", "floor_hue", "spot_phi"])
def test_orbit_varies_only_its_factor_on_an_even_grid(factor: str) -> None:
    lat = orbit_latents(np.random.default_rng(1), factor, 9)
    k = FACTORS.index(factor)
    lo, hi = FactorRanges().of(factor)
    np.testing.assert_allclose(lat[:, k], np.linspace(lo, hi, 9))
    others = np.delete(lat, k, axis=1)
    np.testing.assert_array_equal(others, np.repeat(others[:1], 9, axis=0))


def test_orbit_rejects_a_factor_the_variant_lacks() -> None:
    with pytest.raises(ConfigError, match="trans_x"):
        orbit_latents(np.random.default_rng(0), "trans_x", 4, "base")
    lat = orbit_latents(np.random.default_rng(0), "trans_x", 4, "T")
    np.testing.assert_allclose(lat[:, 7], np.linspace(-0.5, 0.5, 4))
