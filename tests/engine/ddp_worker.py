"""One rank of a 2-process gloo test, started by tests/engine/test_ddp.py with torchrun's variables.

    python tests/engine/ddp_worker.py OUT_DIR CONFIG.yaml RUN_DIR MAX_STEPS

1. SyncBatchNormCPU against BatchNorm on the whole batch: every rank writes OUT_DIR/rank{R}.json;
2. the real training loop for MAX_STEPS steps in the process group set up for step 1 (so the loop's
   reuse of an existing group is exercised too); rank 0 writes RUN_DIR.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from sie.engine.sync_bn import convert_to_sync_batchnorm


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
        nn.BatchNorm1d(5),
    )


def _data(rank: int) -> torch.Tensor:
    # Different data per rank, with a rank-dependent offset so the local statistics differ a lot.
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(6, 3, 6, 6, generator=g) * (1 + rank) + 3.0 * rank


def _loss(out: torch.Tensor) -> torch.Tensor:
    weights = torch.arange(out.shape[1], dtype=out.dtype) + 1.0
    # Cubic: a loss quadratic in a BatchNorm output has zero gradient through it (the mean and
    # variance of the normalised output are fixed), which would hide any backward error.
    return ((out - 0.3) ** 3 * weights).mean()


def syncbn(out_dir: Path) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    model = nn.parallel.DistributedDataParallel(convert_to_sync_batchnorm(_net()))
    x = _data(rank).requires_grad_(True)
    out = model(x)
    _loss(out).backward()
    # One process, plain BatchNorm, the concatenated batch: what the distributed run must equal.
    single = _net()
    xs = torch.cat([_data(r) for r in range(world)]).requires_grad_(True)
    out_single = single(xs)
    (_loss(out_single) * world).backward()  # x world: undo the 1/world that DDP's average carries
    rows = slice(rank * 6, (rank + 1) * 6)

    def rel(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Largest |a - b| relative to the largest |b| over all the pairs."""
        scale = max(float(b.abs().max()) for _, b in pairs)
        return max(float((a - b).abs().max()) for a, b in pairs) / scale

    # Rank r's loss is the mean over its rows; the all-reduce in the backward pass hands each rank the
    # gradient of the SUM of the ranks' losses for its inputs, and DDP averages parameter gradients.
    diffs = {
        "output": rel([(out, out_single[rows])]),
        "input_grad": rel([(x.grad, xs.grad[rows])]),  # type: ignore[list-item, index]
        "param_grad": rel(
            [
                (p.grad, q.grad / world)
                for p, q in zip(model.module.parameters(), single.parameters(), strict=True)
            ]  # type: ignore[misc, operator]
        ),
        "buffers": rel(
            [(a.float(), b.float()) for a, b in zip(model.module.buffers(), single.buffers(), strict=True)]
        ),
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(diffs))


def train(config_path: Path, run_dir: Path, max_steps: int) -> None:
    from sie.config import load_config_file
    from sie.engine import train as run_training

    run_training(load_config_file(config_path), run_dir, max_steps=max_steps)


if __name__ == "__main__":
    dist.init_process_group("gloo")
    syncbn(Path(sys.argv[1]))
    train(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    dist.destroy_process_group()
