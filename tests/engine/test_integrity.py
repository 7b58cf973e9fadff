"""Integrity of what a training run leaves on disk: no poisoned checkpoint, clean logs, exact plans.

Each test reproduces one defect found by fault injection on the tiny dataset (9 training objects) with a small
convnet, so that a checkpoint is a few hundred kB and a step a few milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import sie.engine.build
import sie.files
import sie.methods
from sie.checkpoint import load_checkpoint
from sie.config import Config, DataConfig, ModelConfig, TrainConfig
from sie.engine import train
from sie.engine.faults import NonFiniteLoss, NonFiniteState
from sie.errors import UsageError


def small_config(root: Path, method: str = "vicreg", **train_kw: Any) -> Config:
    """A width-8 convnet at 16 px, 32-wide heads, fp32 on CPU, deterministic, a record every step."""
    settings: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 4,  # 9 objects: 2 steps per epoch
        "device": "cpu",
        "precision": "fp32",
        "log_every_s": 0.0,
        "deterministic": True,
    }
    settings.update(train_kw)
    return Config(
        data=DataConfig(root=str(root), resolution=16, num_workers=0),
        model=ModelConfig(method=method, arch="convnet", small_stem=False, width=8, equi=16, mlp="32-32-32"),
        train=TrainConfig(**settings),
    )


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def all_finite(state: dict[str, Any]) -> bool:
    tensors = list(state["model"].values()) + [
        v for s in state["optimizer"]["state"].values() for v in s.values()
    ]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


# ---- item 1: no checkpoint with non-finite weights or optimiser state --------------------------------


def _poison_after(monkeypatch: pytest.MonkeyPatch, at_step: int, where: str) -> None:
    """After the optimiser step of step ``at_step`` (0-based), write inf into one tensor of ``where``."""
    real_build, real_optimizer = sie.methods.build_method, sie.engine.build.build_optimizer
    optimizers: list[torch.optim.Optimizer] = []

    def build_optimizer(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimizers.append(real_optimizer(*args, **kwargs))
        return optimizers[-1]

    def poisoned_build(cfg: Config, transform_dim: int) -> torch.nn.Module:
        method = real_build(cfg, transform_dim)
        hook = method.on_step_end

        def on_step_end(progress: Any) -> None:
            hook(progress)
            if progress.step != at_step:
                return
            with torch.no_grad():
                if where == "optimizer":  # Adam's second moment overflows; the weights stay finite
                    state = next(s for s in optimizers[-1].state.values() if "exp_avg_sq" in s)
                    state["exp_avg_sq"].view(-1)[0] = float("inf")
                else:
                    frozen = where == "ema target"  # requires_grad=False, in the state dict
                    param = next(p for p in method.parameters() if p.requires_grad != frozen)
                    param.view(-1)[0] = float("inf")

        method.on_step_end = on_step_end  # type: ignore[method-assign]
        return method

    monkeypatch.setattr(sie.methods, "build_method", poisoned_build)
    monkeypatch.setattr(sie.engine.build, "build_optimizer", build_optimizer)


@pytest.mark.parametrize(
    ("method", "where"), [("vicreg", "parameter"), ("byol", "ema target"), ("vicreg", "optimizer")]
)
def test_non_finite_weights_after_a_finite_loss_are_never_checkpointed(
    method: str, where: str, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 14 item 1: the bad step is the last batch of an epoch; the epoch-end checkpoint used to
    # overwrite the good one with inf and report "the last good checkpoint (step 1) is kept".
    cfg = small_config(tiny_dataset, method)
    run = tmp_path / "run"
    train(cfg, run, max_steps=1)
    good = (run / "checkpoint.pt").read_bytes()
    _poison_after(monkeypatch, at_step=1, where=where)
    with pytest.raises(NonFiniteState) as err:
        train(cfg, run, resume=True)
    message = str(err.value)
    assert message.startswith("non-finite weights or optimiser state after step 2 (epoch 1): ")
    assert f"not saved, the last good checkpoint (step 1) is kept in {run / 'checkpoint.pt'}" in message
    assert ("optimizer." if where == "optimizer" else "model.") in message
    assert isinstance(err.value, NonFiniteLoss) and err.value.exit_code == 1
    assert (run / "checkpoint.pt").read_bytes() == good  # the step-1 checkpoint, byte for byte
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 1 and all_finite(state)
    assert json.loads((run / "run.json").read_text())["status"].startswith("failed: NonFiniteState")


def test_a_poisoned_checkpoint_from_an_older_version_is_not_resumed(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    cfg = small_config(tiny_dataset)
    run = train(cfg, tmp_path / "run", max_steps=1)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    next(iter(state["model"].values())).view(-1)[0] = float("nan")
    state.pop("checksum", None)  # as written before checkpoints carried one
    torch.save(state, run / "checkpoint.pt")
    with pytest.raises(
        UsageError, match=r"checkpoint\.pt holds non-finite values \(model\..*cannot be resumed"
    ):
        train(cfg, run, resume=True)


# ---- item 5: metrics.jsonl holds each step once ---------------------------------------------------------


def _die_before_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Kill the run (no checkpoint, as kill -9) when it is about to run optimiser step ``step`` + 1."""
    import sie.engine.loop as loop

    real_step = loop._step

    def dying_step(run: Any, *args: Any) -> Any:
        if run.step == step:
            raise SystemExit("killed")
        return real_step(run, *args)

    monkeypatch.setattr(loop, "_step", dying_step)


def test_a_fresh_start_truncates_and_a_resume_drops_records_past_the_checkpoint(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_config(tiny_dataset, batch_size=2, checkpoint_every_min=1e9)  # 4 steps per epoch
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _die_before_step(patch, 3)
        with pytest.raises(SystemExit):
            train(cfg, run)
    assert [r["step"] for r in records(run)] == [1, 2, 3] and not (run / "checkpoint.pt").exists()
    # The same command again: a fresh run. Before: steps 1, 2, 3 were appended after the old 1, 2, 3.
    with monkeypatch.context() as patch:
        _die_before_step(patch, 6)  # after the epoch-end checkpoint at step 4
        with pytest.raises(SystemExit):
            train(cfg, run)
    assert [r["step"] for r in records(run)] == [1, 2, 3, 4, 5, 6]
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 4
    train(cfg, run, resume=True)
    assert [r["step"] for r in records(run)] == list(range(1, 9))


# ---- item 6: a resume never changes the plan of steps --------------------------------------------------


def test_resume_refuses_a_change_of_batch_size_or_of_steps_per_epoch(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    # Before: batch 4 -> 2 under --allow-config-change showed "step 13/12", ran past the planned total
    # and skipped objects never seen (the position in the epoch counted batches of the old size).
    cfg = small_config(tiny_dataset)  # 9 objects, batch 4: 2 steps per epoch
    run = train(cfg, tmp_path / "run", max_steps=1)
    saved = (run / "checkpoint.pt").read_bytes()
    smaller = replace(cfg, train=replace(cfg.train, batch_size=2))
    with pytest.raises(UsageError) as err:
        train(smaller, run, resume=True, allow_config_change=True)
    assert str(err.value) == (
        f"--resume {run}: train.batch_size cannot change on resume (4 -> 2): the checkpoint's step 1, its "
        "position in epoch 0 and the learning-rate schedule count batches of 4; resume with --batch-size 4, "
        "or start a new run (another --out)"
    )
    assert err.value.exit_code == 2
    keep_last = replace(cfg, train=replace(cfg.train, drop_last=False))  # 3 steps per epoch
    with pytest.raises(
        UsageError, match=r"the run has 2 steps per epoch, this configuration gives 3 \(9 objects"
    ):
        train(keep_last, run, resume=True, allow_config_change=True)
    assert (run / "checkpoint.pt").read_bytes() == saved
    assert [r["step"] for r in records(run)] == [1]
    # A change that keeps the plan (here the number of epochs) is accepted and ends on plan.
    longer = replace(cfg, train=replace(cfg.train, epochs=3))
    train(longer, run, resume=True, allow_config_change=True)
    assert [r["step"] for r in records(run)] == list(range(1, 7))
    assert json.loads((run / "run.json").read_text())["step"] == 6


# ---- item 7: a corrupt checkpoint is refused, not trained on or evaluated --------------------------------


def test_a_bit_flipped_training_checkpoint_is_refused_by_resume_and_by_load_method(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    from sie.checkpoint import load_method

    cfg = small_config(tiny_dataset)
    run = train(cfg, tmp_path / "run", max_steps=1)
    model = load_checkpoint(run / "checkpoint.pt")["model"]
    weight = next(v for k, v in model.items() if k.startswith("backbone.") and v.numel() > 100)
    data = bytearray((run / "checkpoint.pt").read_bytes())
    at = data.find(weight.reshape(-1)[:4].numpy().tobytes())
    data[at + 3] ^= 0x40  # one exponent bit: the weight becomes ~1e37
    (run / "checkpoint.pt").write_bytes(bytes(data))
    corrupt = rf"{run / 'checkpoint.pt'} is corrupt: its tensors do not match the checksum"
    with pytest.raises(UsageError, match=corrupt):
        train(cfg, run, resume=True)
    with pytest.raises(UsageError, match=corrupt):  # what `sie eval RUN` loads the method with
        load_method(run)


# ---- item 11: temporary files of writes killed midway are removed ---------------------------------------


@pytest.mark.parametrize("resume", [False, True])
def test_temporary_files_left_by_a_killed_write_are_removed_at_start_and_resume(
    resume: bool, tiny_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: every kill -9 during a checkpoint write left a .checkpoint.pt.*.tmp behind, forever.
    cfg = small_config(tiny_dataset)
    run = tmp_path / "run"
    if resume:
        train(cfg, run, max_steps=1)
    run.mkdir(exist_ok=True)
    stale = [run / ".checkpoint.pt.k9x1_abc.tmp", run / ".checkpoint.pt.0q2w3e.tmp", run / ".run.json.zz.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    unrelated = run / "notes.tmp"
    unrelated.write_text("mine")
    train(cfg, run, resume=resume, max_steps=2)
    assert not [p for p in stale if p.exists()] and unrelated.read_text() == "mine"
    assert not list(run.glob(".*.tmp"))
    assert "removed 3 temporary file(s) left in" in caplog.text


# ---- item 10: a second Ctrl-C while a checkpoint is written ---------------------------------------------


def test_a_second_ctrl_c_during_a_checkpoint_write_exits_130_and_keeps_the_previous_checkpoint(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import signal

    import sie.checkpoint
    from sie.cli import main
    from sie.config import save_config

    real_save = torch.save
    calls: list[int] = []

    class CtrlCTwice:
        """The file torch.save writes to; the user presses Ctrl-C twice while the bytes go out."""

        def __init__(self, handle: Any) -> None:
            self.handle, self.writes = handle, 0

        def write(self, data: Any) -> int:
            self.writes += 1
            if self.writes == 3:  # amid the archive: torch.save rewraps the interrupt as a RuntimeError
                os.kill(os.getpid(), signal.SIGINT)  # stop: finish the step, checkpoint
                os.kill(os.getpid(), signal.SIGINT)  # the impatient second one
            return int(self.handle.write(data))

        def flush(self) -> None:
            self.handle.flush()

    def save(obj: Any, handle: Any) -> None:
        calls.append(1)
        real_save(obj, CtrlCTwice(handle) if len(calls) == 2 else handle)

    monkeypatch.setattr(sie.checkpoint.torch, "save", save)
    run = tmp_path / "run"
    # checkpoint_every_min=0: a checkpoint after every step; the second one is interrupted.
    save_config(small_config(tiny_dataset, checkpoint_every_min=0.0), tmp_path)
    code = main(["train", "--config", str(tmp_path / "config.yaml"), "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 130, err  # before: 1, with a RuntimeError traceback ("unexpected pos")
    assert err.strip().splitlines()[-1] == "sie train: interrupted"
    assert len(calls) == 2
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 1  # the previous checkpoint, intact
    assert not list(run.glob(".*.tmp"))
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


# ---- item 9: a full disk, a read-only run directory, an unwritable metrics.jsonl ------------------------


def _cli_train(*args: str) -> list[str]:
    return ["train", *args]


def _first_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("sie train: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_previous_checkpoint(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import resource

    from sie.cli import main
    from sie.config import save_config

    save_config(small_config(tiny_dataset), tmp_path)
    run = tmp_path / "run"
    assert (
        main(_cli_train("--config", str(tmp_path / "config.yaml"), "--out", str(run), "--max-steps", "1"))
        == 0
    )
    good = (run / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    # A file-size limit makes the write fail as a full disk does (EFBIG instead of ENOSPC, same path
    # through torch.save, which rewraps it as "RuntimeError: ... unexpected pos"). Python ignores SIGXFSZ.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(good) // 2, hard))
    try:
        code = main(_cli_train("--out", str(run), "--resume"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    line = _first_error_line(capsys.readouterr().err)
    assert code == 1
    assert line == (
        f"sie train: error: could not write checkpoint {run / 'checkpoint.pt'}: File too large; "
        "the previous checkpoint (if any) is intact"
    )
    assert (run / "checkpoint.pt").read_bytes() == good and not list(run.glob(".*.tmp"))
    status = json.loads((run / "run.json").read_text())["status"]
    assert status.startswith("failed: WorkFailed: could not write checkpoint") and "File too large" in status


def test_a_run_directory_made_read_only_mid_run_reports_the_real_error(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno
    import tempfile

    import sie.checkpoint
    import sie.engine.loop as loop
    from sie.cli import main
    from sie.config import save_config

    run = tmp_path / "run"
    real_mkstemp, real_step = tempfile.mkstemp, loop._step
    read_only = {"now": False}

    def mkstemp(*args: Any, dir: Any = None, **kwargs: Any) -> Any:
        if read_only["now"] and Path(dir) == run:  # as chmod a-w RUN: no new file, its files still writable
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def step(r: Any, *args: Any) -> Any:
        out = real_step(r, *args)
        read_only["now"] = r.step >= 5
        return out

    monkeypatch.setattr(sie.files.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(loop, "_step", step)
    # 4 steps per epoch, a checkpoint at each epoch end; the directory turns read-only after step 5.
    save_config(small_config(tiny_dataset, batch_size=2, checkpoint_every_min=1e9), tmp_path)
    code = main(_cli_train("--config", str(tmp_path / "config.yaml"), "--out", str(run)))
    line = _first_error_line(capsys.readouterr().err)
    assert code == 1
    # Before: a PermissionError traceback from writing run.json in the failure handler, run.json "running".
    assert line == (
        f"sie train: error: could not write checkpoint {run / 'checkpoint.pt'}: Permission denied; "
        "the previous checkpoint (if any) is intact"
    )
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 4 and not list(run.glob(".*.tmp"))
    info = json.loads((run / "run.json").read_text())  # written in place: the file itself is writable
    assert info["status"].startswith("failed: WorkFailed: could not write checkpoint") and info["step"] == 8


def test_an_unwritable_metrics_jsonl_is_one_line_at_start_and_mid_run(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sie.engine.loop as loop
    from sie.cli import main
    from sie.config import save_config

    save_config(small_config(tiny_dataset, batch_size=2, checkpoint_every_min=1e9), tmp_path)
    config = str(tmp_path / "config.yaml")
    # At start: metrics.jsonl cannot be written (a directory is in the way; chmod does not stop root).
    blocked = tmp_path / "blocked"
    (blocked / "metrics.jsonl").mkdir(parents=True)
    assert main(_cli_train("--config", config, "--out", str(blocked))) == 2
    line = _first_error_line(capsys.readouterr().err)
    assert (
        line
        == f"sie train: error: cannot write the run directory {blocked}: {blocked / 'metrics.jsonl'}: Is a directory"
    )
    # Mid-run, after the epoch-end checkpoint at step 4: before, an IsADirectoryError traceback.
    run = tmp_path / "run"
    real_step = loop._step

    def step(r: Any, *args: Any) -> Any:
        out = real_step(r, *args)
        if r.step == 5:
            (run / "metrics.jsonl").unlink()
            (run / "metrics.jsonl").mkdir()
        return out

    monkeypatch.setattr(loop, "_step", step)
    assert main(_cli_train("--config", config, "--out", str(run))) == 1
    line = _first_error_line(capsys.readouterr().err)
    assert line == f"sie train: error: could not write {run / 'metrics.jsonl'}: Is a directory"
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 4
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == f"failed: WorkFailed: could not write {run / 'metrics.jsonl'}: Is a directory"


# ---- item 8: a corrupt run.json ---------------------------------------------------------------------


def test_a_corrupt_run_json_is_one_line_for_resume_and_eval(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sie.cli import main
    from sie.config import save_config

    save_config(small_config(tiny_dataset), tmp_path)
    run = tmp_path / "run"
    assert (
        main(_cli_train("--config", str(tmp_path / "config.yaml"), "--out", str(run), "--max-steps", "1"))
        == 0
    )
    saved = (run / "checkpoint.pt").read_bytes()
    (run / "run.json").write_text("{x\n")  # echo '{x' > RUN/run.json
    capsys.readouterr()
    expected = (
        f"{run / 'run.json'} is not valid JSON (Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1)); restore it from a copy, or delete it"
    )
    # Before: a JSONDecodeError traceback from both commands.
    assert main(_cli_train("--out", str(run), "--resume")) == 2
    assert _first_error_line(capsys.readouterr().err).startswith(f"sie train: error: {expected}")
    assert main(["eval", str(run), "--data", str(tiny_dataset)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"sie eval: error: {expected}" in err
    assert (run / "checkpoint.pt").read_bytes() == saved and (run / "run.json").read_text() == "{x\n"
