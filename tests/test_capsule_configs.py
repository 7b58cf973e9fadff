"""The shipped configs of the capsule methods resolve to their published settings."""

from __future__ import annotations

from pathlib import Path

from sie.config import resolve_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_equicaps_configs() -> None:
    for name, pose in (("equicaps_3diebench.yaml", "3x3"), ("equicaps_3diebench_t.yaml", "4x4")):
        cfg = resolve_config("paper", config_file=CONFIGS / name)
        o = cfg.model.section("equicaps")
        assert (cfg.model.method, cfg.data.resolution, cfg.train.batch_size, cfg.train.epochs) == (
            "equicaps",
            256,
            256,
            2000,
        )
        assert (o.capsules, o.pose, o.frame) == (32, pose, "object")
        assert (o.sim_coeff, o.equi_factor, o.std_coeff, o.cov_coeff, cfg.optim.lr) == (
            0.1,
            5.0,
            10.0,
            1.0,
            1e-3,
        )


def test_capsie_config() -> None:
    cfg = resolve_config("paper", config_file=CONFIGS / "capsie_3diebench.yaml")
    o = cfg.model.section("capsie")
    assert (cfg.model.method, cfg.train.batch_size, cfg.model.hypernetwork) == ("capsie", 1024, "linear")
    assert (o.capsules, o.width, o.sim_coeff, o.equi_factor) == (16, 256, 10.0, 0.45)
    assert (o.anchor_temperature_start, o.target_temperature_start, o.target_temperature_end) == (
        0.1,
        0.025,
        0.1,
    )
