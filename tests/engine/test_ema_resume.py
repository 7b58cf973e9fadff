"""A method with an EMA target (``byol``) through the real training loop: exact resume, target included.

Same pattern as the resume test of tests/engine/test_loop.py, on the tiny dataset: a run interrupted
mid-epoch and resumed must repeat the uninterrupted run's losses step by step and end with the same
weights, the EMA target's parameters and its last momentum among them (they live in the method's
state dict, so the checkpoint carries them; the momentum schedule depends only on the step).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from sie.checkpoint import load_checkpoint
from sie.config import Config, DataConfig, ModelConfig, TrainConfig
from sie.engine import train
from sie.methods import build_method
from sie.methods.byol import BYOLConfig
from sie.seeding import seed_everything

BASE = 0.9  # far from 1 so the target visibly lags the online network after a few steps


def byol_config(root: Path, **train_kw: Any) -> Config:
    """BYOL on a small-stem ResNet-18 at 16 px, small heads, momentum ramp per step, fp32 on CPU."""
    section = BYOLConfig(proj_hidden=32, proj_dim=16, pred_hidden=32, ema=BASE, ema_unit="step")
    settings: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 2,
        "device": "cpu",
        "precision": "fp32",
        "log_every_s": 0.0,
        "deterministic": True,
    }
    settings.update(train_kw)
    return Config(
        data=DataConfig(root=str(root), resolution=16, num_workers=0),
        model=ModelConfig(method="byol", small_stem=True, sections=(("byol", section),)),
        train=TrainConfig(**settings),
    )


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_byol_resumes_exactly_with_its_ema_target(tiny_dataset: Path, tmp_path: Path) -> None:
    # 9 training objects, 2 per batch: 4 steps per epoch, 8 steps in all; stop mid-epoch 0 at step 3.
    cfg = byol_config(tiny_dataset)
    straight = train(cfg, tmp_path / "straight")
    resumed = tmp_path / "resumed"
    train(cfg, resumed, max_steps=3)
    state = load_checkpoint(resumed / "checkpoint.pt")
    assert (state["step"], state["epoch"], state["batches_in_epoch"]) == (3, 0, 3)
    # The checkpoint holds the target and the momentum of the last update (step index 2 of 8).
    tau_2 = 1 - (1 - BASE) * (math.cos(math.pi * 2 / 8) + 1) / 2
    assert state["model"]["target_backbone.momentum"].item() == pytest.approx(tau_2, abs=1e-12)
    train(cfg, resumed, resume=True)

    a, b = records(straight), records(resumed)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 9))
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", "loss/byol"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-6, rel=1e-6), (ra["step"], key)

    final_a = load_checkpoint(straight / "checkpoint.pt")["model"]
    final_b = load_checkpoint(resumed / "checkpoint.pt")["model"]
    assert final_a.keys() == final_b.keys()
    target_keys = [k for k in final_a if k.startswith(("target_backbone.", "target_projector."))]
    assert any(k.startswith("target_backbone.module.") for k in target_keys)
    assert any(k.startswith("target_projector.module.") for k in target_keys)
    for key in final_a:
        assert torch.allclose(final_a[key].double(), final_b[key].double(), atol=1e-6), key
    # The target moved, and lags the online network (it is not a copy of it).
    tau_7 = 1 - (1 - BASE) * (math.cos(math.pi * 7 / 8) + 1) / 2
    assert final_a["target_projector.momentum"].item() == pytest.approx(tau_7, abs=1e-12)
    online_weight, target_weight = final_a["projector.0.weight"], final_a["target_projector.module.0.weight"]
    assert not torch.allclose(online_weight, target_weight, atol=1e-6)
    seed_everything(cfg.train.seed)
    initial = build_method(cfg, 4).state_dict()["target_projector.module.0.weight"]
    assert not torch.allclose(initial, target_weight, atol=1e-6)
    info = json.loads((resumed / "run.json").read_text())
    assert info["status"] == "completed" and info["resumes"] == 1
