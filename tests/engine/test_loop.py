"""The real training loop on the tiny dataset: every method, exact resume, faults, config changes, exports."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import sie
import sie.methods
from sie.checkpoint import load_backbone, load_checkpoint, load_method
from sie.config import Config, DataConfig, ModelConfig, TrainConfig
from sie.engine import train
from sie.engine.faults import NonFiniteLoss
from sie.errors import ConfigError, UsageError
from sie.methods import METHODS, build_method
from sie.methods.context_ssl import ContextSSLConfig
from sie.seeding import seed_everything


def tiny_config(root: Path, method: str = "sie", **train_kw: Any) -> Config:
    """A ResNet-18 with the small stem at 16 px, 32-wide heads, fp32 on CPU, a record every step."""
    required = METHODS[method].requires_transform if method in METHODS else None
    transform = required[0] if required else "quat"
    equi = 16 if method == "vicreg-partinv" else 256  # vicreg-partinv counts embedding dims
    settings: dict[str, Any] = {
        "epochs": 1,
        "batch_size": 4,
        "device": "cpu",
        "precision": "fp32",
        "log_every_s": 0.0,
    }
    settings.update(train_kw)
    # ContextSSL's default GPT (153 M parameters) would make its checkpoint 2 GB: a 64-wide one here.
    sections = (
        (("context_ssl", ContextSSLConfig(n_embd=64, n_head=2, aux_hidden=32)),)
        if method == "context-ssl"
        else ()
    )
    return Config(
        data=DataConfig(root=str(root), resolution=16, num_workers=0, transform=transform),
        model=ModelConfig(
            method=method, small_stem=True, mlp="32-32-32", equi=equi, augself_mlp="32", sections=sections
        ),
        train=TrainConfig(**settings),
    )


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def initial_weights(cfg: Config, transform_dim: int) -> dict[str, torch.Tensor]:
    seed_everything(cfg.train.seed)
    return build_method(cfg, transform_dim).state_dict()


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_two_steps_through_the_loop(
    method: str, tiny_dataset: Path, tmp_path: Path
) -> None:
    cfg = tiny_config(tiny_dataset, method)
    run = train(cfg, tmp_path / "run", max_steps=2)
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "checkpoint.pt",
        "backbone.safetensors",
        "metrics.jsonl",
        "run.json",
    }
    logged = records(run)
    assert [r["step"] for r in logged] == [1, 2]
    for record in logged:
        terms = {k: v for k, v in record.items() if k.startswith(("loss", "probe/"))}
        assert "loss" in terms and "loss/probe" in terms and "probe/top1_full" in terms
        assert all(v is not None and math.isfinite(v) for v in terms.values()), terms
        assert record["pairs_per_s"] > 0 and 0 <= record["data_wait_frac"] <= 1 and record["peak_mem_mb"] > 0
    info = json.loads((run / "run.json").read_text())
    # The tiny split gives exactly 2 steps per epoch, so max_steps=2 is also the run's last step.
    assert info["status"] == "completed" and info["step"] == 2 == info["steps_per_epoch"] * cfg.train.epochs
    state = load_checkpoint(run / "checkpoint.pt")
    before = initial_weights(cfg, info["transform_dim"])
    changed = [
        k for k, v in state["model"].items() if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert any(k.startswith("backbone.") for k in changed) and any(
        not k.startswith("backbone.") for k in changed
    )


def test_exports_round_trip(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_dataset, "sie")
    run = train(cfg, tmp_path / "run", max_steps=1)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    tensors = load_file(str(run / "backbone.safetensors"))
    assert not any(k.startswith(("module.", "backbone.", "_orig_mod.")) for k in tensors)
    for key, value in tensors.items():
        assert torch.equal(value, state["model"][f"backbone.{key}"])
    backbone = sie.load_backbone(run / "backbone.safetensors")
    assert not backbone.training
    method, loaded_cfg = load_method(run)
    assert loaded_cfg == cfg and not method.training
    for key, value in method.state_dict().items():
        assert torch.equal(value, state["model"][key])
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(backbone(images), method.backbone(images))
    assert load_backbone(run / "backbone.safetensors")(images).shape == (2, 512)


def test_interrupted_and_resumed_run_repeats_the_uninterrupted_losses(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    # 9 training objects, 2 per batch: 4 steps per epoch, 8 steps in all; stop mid-epoch 0 at step 3.
    cfg = tiny_config(tiny_dataset, "sie", epochs=2, batch_size=2, deterministic=True)
    straight = train(cfg, tmp_path / "straight")
    assert not torch.are_deterministic_algorithms_enabled()  # the process-wide flag is given back
    resumed = tmp_path / "resumed"
    train(cfg, resumed, max_steps=3)
    state = load_checkpoint(resumed / "checkpoint.pt")
    assert (state["step"], state["epoch"], state["batches_in_epoch"]) == (3, 0, 3)
    train(cfg, resumed, resume=True)
    a, b = records(straight), records(resumed)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 9))
    keys = [k for k in a[0] if k.startswith(("loss", "probe/"))]
    for ra, rb in zip(a, b, strict=True):
        for key in keys:
            assert rb[key] == pytest.approx(ra[key], abs=1e-6, rel=1e-6), (ra["step"], key)
    final_a = load_checkpoint(straight / "checkpoint.pt")["model"]
    final_b = load_checkpoint(resumed / "checkpoint.pt")["model"]
    assert all(torch.allclose(final_a[k].float(), final_b[k].float(), atol=1e-6) for k in final_a)
    info = json.loads((resumed / "run.json").read_text())
    assert info["status"] == "completed" and info["resumes"] == 1


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_build = sie.methods.build_method

    def poisoned_build(cfg: Config, transform_dim: int) -> torch.nn.Module:
        method = real_build(cfg, transform_dim)
        forward, calls = method.forward, []

        def forward_going_bad(batch: Any) -> Any:
            out = forward(batch)
            calls.append(1)
            if len(calls) >= 2:  # the second step, in the middle of the first epoch
                out.loss = out.loss * float("nan")
                out.terms["loss/cov"] = out.terms["loss/cov"] + float("inf")
            return out

        method.forward = forward_going_bad  # type: ignore[method-assign]
        return method

    monkeypatch.setattr(sie.methods, "build_method", poisoned_build)
    # checkpoint_every_min=0: a time-based checkpoint after every step, so one exists mid-epoch.
    cfg = tiny_config(tiny_dataset, "vicreg", epochs=3, checkpoint_every_min=0.0)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLoss) as err:
        train(cfg, run)
    message = str(err.value)
    assert message.startswith("non-finite loss at step 1: ")  # a checkpoint was due: checked at once
    assert "loss=nan" in message and "loss/cov=inf" in message and "loss/inv" not in message
    assert "last good checkpoint (step 1)" in message
    assert err.value.exit_code == 1
    state = load_checkpoint(run / "checkpoint.pt")
    assert (state["step"], state["epoch"], state["batches_in_epoch"]) == (1, 0, 1)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert json.loads((run / "run.json").read_text())["status"].startswith("failed: NonFiniteLoss")


def test_a_nonfinite_loss_read_later_is_reported_at_its_step_and_nothing_after_it_is_saved(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No step waits on the device: the flag is read at the first log record or checkpoint after it."""
    real_build = sie.methods.build_method

    def poisoned_build(cfg: Config, transform_dim: int) -> torch.nn.Module:
        method = real_build(cfg, transform_dim)
        forward = method.forward

        def forward_bad_once(batch: Any) -> Any:
            out = forward(batch)
            if not hasattr(method, "_poisoned"):
                method._poisoned = True  # type: ignore[attr-defined]
                out.loss = out.loss * float("nan")
            return out

        method.forward = forward_bad_once  # type: ignore[method-assign]
        return method

    monkeypatch.setattr(sie.methods, "build_method", poisoned_build)
    cfg = tiny_config(tiny_dataset, "vicreg", epochs=3, checkpoint_every_min=1e9)
    cfg = replace(cfg, train=replace(cfg.train, log_every_s=1e9))
    run = tmp_path / "run"
    with pytest.raises(
        NonFiniteLoss, match=r"^non-finite loss at step 0 \(found at step 2\); nothing computed since"
    ):
        train(cfg, run)  # found before the epoch-end checkpoint of step 2
    assert not (run / "checkpoint.pt").exists()
    assert not (run / "metrics.jsonl").exists() or (run / "metrics.jsonl").read_text() == ""


def test_resume_with_another_config_is_refused_or_recorded(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_dataset, "vicreg")
    run = train(cfg, tmp_path / "run", max_steps=1)
    with pytest.raises(UsageError, match=r"already holds a checkpoint\.pt; pass --resume"):
        train(cfg, run)
    changed = replace(
        cfg,
        model=replace(cfg.model, sim_coeff=5.0),
        optim=replace(cfg.optim, lr=2e-3),
        train=replace(cfg.train, log_every_s=5.0),
    )
    with pytest.raises(ConfigError) as err:
        train(changed, run, resume=True)
    assert "2 key(s): model.sim_coeff: 10.0 -> 5.0; optim.lr: 0.001 -> 0.002" in str(err.value)
    train(changed, run, resume=True, allow_config_change=True, max_steps=2)
    info = json.loads((run / "run.json").read_text())
    assert info["config_changes"] == [
        {
            "at_step": 1,
            "changes": [
                ["model.sim_coeff", 10.0, 5.0],
                ["optim.lr", 0.001, 0.002],
                ["train.log_every_s", 0.0, 5.0],
            ],
        }
    ]
    assert load_checkpoint(run / "checkpoint.pt")["config"]["model"]["sim_coeff"] == 5.0
    with pytest.raises(UsageError, match=r"no checkpoint\.pt"):
        train(cfg, tmp_path / "empty", resume=True)
    # Another backbone is never "a config change": one line naming both architectures.
    convnet = replace(
        changed, model=replace(changed.model, arch="convnet", small_stem=False, width=8, equi=16)
    )
    with pytest.raises(UsageError, match=r"holds a model\.arch='resnet18' .* asks for model\.arch='convnet'"):
        train(convnet, run, resume=True, allow_config_change=True, max_steps=3)


def test_checkpoint_every_epochs_saves_every_nth_epoch_and_the_last(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sie.engine.loop as loop

    saved: list[tuple[int, int]] = []
    real_save = loop.save_training_state

    def spy(run: Any) -> None:
        saved.append((run.epoch, run.batches_in_epoch))
        real_save(run)

    monkeypatch.setattr(loop, "save_training_state", spy)
    cfg = tiny_config(tiny_dataset, "vicreg", epochs=5, checkpoint_every_epochs=2, checkpoint_every_min=1e9)
    run = train(cfg, tmp_path / "run")
    assert saved == [(2, 0), (4, 0), (5, 0)]  # epochs 2 and 4, and the last one
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["epoch"] == 5
    # A stop between checkpoint epochs still writes a checkpoint of where it stopped.
    saved.clear()
    steps_per_epoch = info["step"] // 5
    train(cfg, tmp_path / "stopped", max_steps=steps_per_epoch * 3)
    assert saved == [(2, 0), (3, 0)]


def test_a_sequence_longer_than_the_views_per_object_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_dataset, "seq-jepa")
    section = replace(cfg.model.section("seq_jepa"), seq_len=5)  # 6 views per sample, the dataset has 5
    cfg = replace(cfg, model=replace(cfg.model, sections=(("seq_jepa", section),)))
    with pytest.raises(
        UsageError,
        match=r"5 views per object, but model\.method='seq-jepa' trains on 6 views of one object per sample "
        r"\(model\.seq_jepa\.seq_len \+ 1\)",
    ):
        train(cfg, tmp_path / "run", max_steps=1)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_an_unknown_method_is_named_before_the_data_is_read(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "no-such-dataset", "vicrge")
    with pytest.raises(
        ConfigError, match=r"model\.method='vicrge' is not a registered method \(did you mean 'vicreg'\?\)"
    ):
        train(cfg, tmp_path / "run", max_steps=1)


def test_training_logs_elapsed_time_and_an_eta_for_this_invocation(
    tiny_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tiny_config(tiny_dataset, "vicreg", log_every_s=0.0)
    with caplog.at_level("INFO"):
        train(cfg, tmp_path / "run", max_steps=2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert lines, "no progress lines logged"
    # The goal is --max-steps (2), not the run's total; the times read in seconds/minutes.
    assert lines[-1].startswith("step 2/2 ") and re.search(r", \d+ s elapsed, about \d+ s left$", lines[-1])


def test_process_wide_torch_flags_are_given_back(tiny_dataset: Path, tmp_path: Path) -> None:
    torch.backends.cudnn.benchmark = False
    before = torch.are_deterministic_algorithms_enabled()
    cfg = tiny_config(tiny_dataset, "vicreg")
    train(replace(cfg, train=replace(cfg.train, deterministic=True)), tmp_path / "run", max_steps=1)
    assert torch.backends.cudnn.benchmark is False
    assert torch.are_deterministic_algorithms_enabled() == before


def test_resuming_on_another_number_of_processes_is_warned_and_recorded(
    tiny_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sie.checkpoint import save_checkpoint

    cfg = tiny_config(tiny_dataset, "vicreg", epochs=2)
    run = train(cfg, tmp_path / "run", max_steps=1)
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["world_size"] == 1
    state["world_size"] = 2  # as if it had been written by a 2-process torchrun
    save_checkpoint(run / "checkpoint.pt", state)
    with caplog.at_level("WARNING"):
        train(cfg, run, resume=True)
    assert "checkpointed with 2 process(es) on 1" in caplog.text
    info = json.loads((run / "run.json").read_text())
    assert info["world_size_changes"] == [{"at_step": 1, "from": 2, "to": 1}]
    assert info["status"] == "completed"
