"""Two gloo processes with different data per rank equal one process on the concatenated batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from sie.checkpoint import load_checkpoint
from sie.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig, save_config
from sie.data import make_train_loader, open_split
from sie.engine import train
from sie.methods import build_method
from sie.seeding import seed_everything

WORKER = Path(__file__).with_name("ddp_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_two_ranks(*args: str, timeout: float = 150.0) -> None:
    """Start ``ddp_worker.py ARGS`` as ranks 0 and 1 (torchrun's environment), wait, check both exit 0."""
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for rank, (proc, output) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, f"rank {rank} exited with {proc.returncode}:\n{output[-4000:]}"


@pytest.fixture(scope="module")
def two_rank_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One launch of two gloo ranks: the SyncBatchNorm check, then one SGD step of the real loop."""
    out = tmp_path_factory.mktemp("ddp")
    save_config(_ddp_config(tiny_dataset), out)
    run_two_ranks(str(out), str(out / "config.yaml"), str(out / "ddp"), "1")
    return out


def test_sync_batchnorm_on_cpu_equals_batchnorm_on_the_whole_batch(two_rank_run: Path) -> None:
    for rank in range(2):
        diffs = json.loads((two_rank_run / f"rank{rank}.json").read_text())
        for key in ("output", "input_grad", "param_grad", "buffers"):
            assert diffs[key] < 1e-5, (rank, key, diffs)


def _ddp_config(root: Path) -> Config:
    # Plain SGD: its update is lr x gradient, so the comparison checks gradients, not Adam's ~sign().
    return Config(
        data=DataConfig(root=str(root), resolution=16, num_workers=0),
        model=ModelConfig(method="sie", small_stem=True, mlp="32-32-32"),
        optim=OptimConfig(optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0),
        train=TrainConfig(
            epochs=1, batch_size=4, device="cpu", precision="fp32", log_every_s=0.0, sync_bn=True
        ),
    )


@pytest.fixture(scope="module")
def one_process_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same step in one process on the whole global batch."""
    return train(_ddp_config(tiny_dataset), tmp_path_factory.mktemp("single") / "single", max_steps=1)


def test_two_processes_with_different_data_equal_one_process_on_the_whole_batch(
    two_rank_run: Path, one_process_run: Path, tiny_dataset: Path
) -> None:
    cfg = _ddp_config(tiny_dataset)
    source = open_split(tiny_dataset)
    first_batch = {}
    for rank, world in ((0, 1), (0, 2), (1, 2)):
        loader = make_train_loader(
            source,
            batch_size_per_rank=4 // world,
            resolution=16,
            rank=rank,
            world_size=world,
            seed=cfg.train.seed,
        )
        loader.set_epoch(0)
        first_batch[rank, world] = next(iter(loader)).object_index.tolist()
    # Different objects on the two ranks; together, the objects of the one-process batch.
    assert not set(first_batch[0, 2]) & set(first_batch[1, 2])
    assert sorted(first_batch[0, 2] + first_batch[1, 2]) == sorted(first_batch[0, 1])

    seed_everything(cfg.train.seed)
    start = build_method(cfg, 4).state_dict()
    ddp = load_checkpoint(two_rank_run / "ddp" / "checkpoint.pt")
    single = load_checkpoint(one_process_run / "checkpoint.pt")
    assert json.loads((two_rank_run / "ddp" / "run.json").read_text())["world_size"] == 2
    updates_ddp = {
        k: ddp["model"][k].double() - v.double() for k, v in start.items() if v.is_floating_point()
    }
    updates_one = {
        k: single["model"][k].double() - v.double() for k, v in start.items() if v.is_floating_point()
    }
    scale = max(float(u.abs().max()) for u in updates_one.values())
    assert scale > 1e-3
    worst = max(float((updates_ddp[k] - updates_one[k]).abs().max()) for k in updates_one)
    assert worst < 1e-4 * scale, worst / scale
    moved = [k for k, u in updates_one.items() if float(u.abs().max()) > 1e-6 * scale]
    assert any("projector" in k or "predictor" in k for k in moved) and any(
        k.startswith("backbone.") for k in moved
    )
    for key, value in ddp["online_eval"].items():  # the online probes are averaged across ranks too
        assert torch.allclose(value.double(), single["online_eval"][key].double(), atol=1e-5, rtol=1e-4), key


# Relative tolerance between the loss terms that 1 and 2 gloo processes log for the same global batch
# (metrics.jsonl, step 1, SIE with SyncBatchNorm, fp32). The terms are the same numbers computed in
# another order (BatchNorm statistics reduced across ranks, the mean of two half-batch means);
# measured: at most 6.3e-7 (loss/cov), 1.4e-7 for the total loss. Before the terms were averaged over
# ranks, rank 0 logged its own half batch: several percent off (13.512 vs 14.426 in the issue).
LOGGED_LOSS_RTOL = 1e-5


def test_logged_losses_are_global_batch_values_whatever_the_number_of_processes(
    two_rank_run: Path, one_process_run: Path
) -> None:
    def first_record(run: Path) -> dict[str, Any]:
        record: dict[str, Any] = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
        return record

    one, two = first_record(one_process_run), first_record(two_rank_run / "ddp")
    assert one["step"] == two["step"] == 1
    terms = sorted(k for k in one if k == "loss" or k.startswith("loss/"))
    assert {"loss", "loss/inv", "loss/equi", "loss/std", "loss/cov", "loss/probe"} <= set(terms)
    for key in terms:
        assert two[key] == pytest.approx(one[key], rel=LOGGED_LOSS_RTOL), key
    # probe/top1_* and probe/rot_r2_* are rank 0's batch (docs/training.md): not compared.
