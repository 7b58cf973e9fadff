"""Pieces of the training engine: RNG state, resume rules, metrics files, signals, faults, online probes."""

from __future__ import annotations

import copy
import json
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from sie.config import Config, ModelConfig, TrainConfig
from sie.engine.faults import nonfinite_terms
from sie.engine.launch import per_device_batch_size
from sie.engine.metrics import MetricsLog, WindowMeter, truncate_metrics
from sie.engine.online import OnlineEvaluator, rotation_target_dim
from sie.engine.signals import StopRequest
from sie.engine.state import capture_rng_state, restore_rng_state, resume_config_changes
from sie.errors import ConfigError


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_round_trip_restores_every_generator() -> None:
    state = capture_rng_state(torch.device("cpu"))
    first = _draws()
    _draws()
    restore_rng_state(state, torch.device("cpu"))
    assert _draws() == first


def test_resume_refuses_config_changes_listing_keys() -> None:
    saved = Config()
    changed = Config(model=ModelConfig(sim_coeff=5.0), train=TrainConfig(epochs=3, log_every_s=1.0))
    with pytest.raises(ConfigError) as err:
        resume_config_changes(saved, changed, allow_change=False, run_dir="RUN")
    message = str(err.value)
    assert "model.sim_coeff: 10.0 -> 5.0" in message and "train.epochs: 2000 -> 3" in message
    assert "log_every_s" not in message  # operational keys may change freely
    assert "--allow-config-change" in message
    changes = resume_config_changes(saved, changed, allow_change=True, run_dir="RUN")
    assert {c[0] for c in changes} == {"model.sim_coeff", "train.epochs", "train.log_every_s"}
    only_free = Config(train=TrainConfig(log_every_s=1.0))
    assert resume_config_changes(saved, only_free, allow_change=False, run_dir="RUN") == [
        ("train.log_every_s", 30.0, 1.0)
    ]


def test_per_device_batch_size() -> None:
    assert per_device_batch_size(1024, 8) == 128
    with pytest.raises(
        ConfigError, match=r"train.batch_size=10 .* divisible by the number of processes \(4\)"
    ):
        per_device_batch_size(10, 4)


def test_metrics_log_and_truncation(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path, enabled=True)
    for step in (1, 2, 3, 4):
        log.write({"step": step, "loss": torch.tensor(float(step)), "bad": float("nan")})
    MetricsLog(tmp_path / "elsewhere", enabled=False).write({"step": 1})  # non-zero ranks write nothing
    assert not (tmp_path / "elsewhere").exists()
    path = tmp_path / "metrics.jsonl"
    with open(path, "a") as handle:
        handle.write('{"step": 5, "loss"')  # a record cut short by a crash
    records = [json.loads(line) for line in path.read_text().splitlines()[:4]]
    assert records[0] == {"step": 1, "loss": 1.0, "bad": None}
    assert truncate_metrics(path, max_step=2) == 3
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


def test_tensorboard_without_the_package_is_a_config_error(tmp_path: Path) -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="sie\\[tensorboard\\]"):
            MetricsLog(tmp_path, enabled=True, tensorboard=True)
    else:
        log = MetricsLog(tmp_path, enabled=True, tensorboard=True)
        log.write({"step": 1, "loss": 2.0})
        log.close()
        assert any((tmp_path / "tensorboard").iterdir())


def test_window_meter_means_and_rates() -> None:
    meter = WindowMeter()
    meter.add_step(pairs=8, data_wait_s=0.0)
    meter.add_values({"loss": torch.tensor(1.0), "probe/top1_full": 0.5})
    meter.add_step(pairs=8, data_wait_s=0.0)
    meter.add_values({"loss": torch.tensor(3.0)})
    summary = meter.summary()
    assert summary["loss"] == 2.0 and summary["probe/top1_full"] == 0.5 and summary["steps"] == 2
    assert summary["pairs_per_s"] > 0 and 0.0 <= summary["data_wait_frac"] <= 1.0
    meter.reset()
    assert meter.steps == 0 and "loss" not in meter.summary()


def test_window_meter_leaves_undefined_values_out_of_the_mean() -> None:
    meter = WindowMeter()
    meter.add_values({"probe/rot_r2_full": torch.tensor(0.5), "loss": torch.tensor(1.0)})
    meter.add_values({"probe/rot_r2_full": torch.tensor(float("nan")), "loss": torch.tensor(2.0)})
    meter.add_values({"probe/rot_r2_full": torch.tensor(0.25)})
    summary = meter.summary()
    assert summary["probe/rot_r2_full"] == pytest.approx(0.375) and summary["loss"] == pytest.approx(1.5)
    meter.reset()
    meter.add_values({"probe/rot_r2_full": torch.tensor(float("nan"))})
    assert "probe/rot_r2_full" not in meter.summary()  # never defined in the window: no record


def test_stop_request_records_signal_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal_name == "SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)  # a repeated SIGTERM keeps waiting for the step to end
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the impatient second Ctrl-C aborts at once
    assert signal.getsignal(signal.SIGTERM) is before


def test_nonfinite_terms_names_each_bad_value() -> None:
    values = {"loss": float("nan"), "loss/inv": 0.5, "loss/cov": float("inf")}
    assert nonfinite_terms(values) == ["loss=nan", "loss/cov=inf"]
    assert nonfinite_terms({"loss": 1.0}) == []


def test_online_evaluator_shapes_metrics_and_no_gradient_to_inputs() -> None:
    torch.manual_seed(0)
    parts = {"full": slice(0, 8), "inv": slice(0, 5), "equi": slice(5, 8)}
    probes = OnlineEvaluator(parts, repr_dim=8, num_classes=3, rotation_dim=rotation_target_dim("quat"))
    assert probes.classifiers["inv"][0].in_features == 5  # type: ignore[index]
    assert probes.regressors["equi"][0].in_features == 6  # type: ignore[index]
    reps = torch.randn(6, 3, 8, requires_grad=True)  # K = 3 views: 2 consecutive pairs per object
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    transforms = torch.randn(6, 2, 6)  # rot+colour: only the first 4 are regressed
    loss, metrics = probes(reps, labels, transforms)
    loss.backward()
    assert reps.grad is None  # detached: nothing flows back to the backbone
    assert all(p.grad is not None for p in probes.parameters())
    assert set(metrics) == {
        "loss/probe",
        *(f"probe/top1_{p}" for p in parts),
        *(f"probe/rot_r2_{p}" for p in parts),
    }
    assert all(0.0 <= float(metrics[f"probe/top1_{p}"]) <= 1.0 for p in parts)
    assert rotation_target_dim("euler") == 3 and rotation_target_dim("rotcolor") == 4


def test_init_distributed_reads_torchrun_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from sie.engine.launch import init_distributed, wrap
    from sie.errors import UsageError

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.distributed, ctx.is_main) == (0, 1, False, True)
    module = torch.nn.BatchNorm1d(3)
    assert wrap(module, ctx, sync_bn=True) is module  # nothing to wrap in one process
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="RANK is not set; launch with torchrun"):
        init_distributed("cpu")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(UsageError, match="MASTER_ADDR is not set"):
        init_distributed("cpu")


def test_sync_batchnorm_conversion_keeps_parameters_keys_and_single_process_behaviour() -> None:
    from sie.engine.sync_bn import SyncBatchNormCPU, convert_to_sync_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.BatchNorm1d(36)
    )
    reference = copy.deepcopy(net)
    keys, weight = list(net.state_dict()), net[1].weight
    converted = convert_to_sync_batchnorm(net)
    assert isinstance(converted[1], SyncBatchNormCPU) and isinstance(converted[3], SyncBatchNormCPU)
    assert converted[1].weight is weight and list(converted.state_dict()) == keys
    x = torch.randn(5, 3, 5, 5)
    # Not distributed: plain BatchNorm, in training (batch statistics, running averages) and eval mode.
    assert torch.allclose(converted(x), reference(x), atol=1e-6)
    for ours, theirs in zip(converted.buffers(), reference.buffers(), strict=True):
        assert torch.allclose(ours.float(), theirs.float())
    converted.eval()
    reference.eval()
    assert torch.allclose(converted(x), reference(x), atol=1e-6)
