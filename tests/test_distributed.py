"""gather_with_grad: 2 gloo processes with different data (and sizes) per rank == one process on all rows.

Each rank computes the batch-statistics losses (variance, covariance, InfoNCE) on gathered embeddings of
its own rows, back-propagates, and averages parameter gradients over ranks as DDP does. The result
must equal the gradient of the same losses computed by one process on the concatenated batch. Ranks
hold different numbers of rows (3 and 5) so that a backward pass that returns the wrong slice, or
forgets the all-reduce, cannot pass by symmetry.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch
from tests.helpers.gloo import run_gloo_workers
from torch import nn

from sie.distributed import gather_with_grad, is_distributed, rank, world_size
from sie.losses import covariance_loss, info_nce_loss, variance_loss

ROWS = (3, 5)

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[4])
    from tests.test_distributed import ROWS, loss_of, make_model, rank_data
    from sie.distributed import gather_with_grad, rank, world_size

    me, world, init_file, _root, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=me, world_size=world)
    assert (rank(), world_size()) == (me, world)
    model = make_model()
    x, y = rank_data(me)
    z_x, z_y = gather_with_grad(model(x)), gather_with_grad(model(y))
    loss = loss_of(z_x, z_y)
    loss.backward()
    grads = []
    for p in model.parameters():
        dist.all_reduce(p.grad)  # DDP: average of the ranks' gradients
        grads.append(p.grad / world)
    if me == 0:
        torch.save({"grads": grads, "gathered": z_x.detach(), "loss": loss.detach()}, out)
    dist.destroy_process_group()
    """
)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(6, 4).double()


def rank_data(index: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + index)
    shift = 3.0 * index  # different distributions per rank
    x = torch.randn(ROWS[index], 6, generator=gen, dtype=torch.float64) + shift
    return x, x + 0.3 * torch.randn(ROWS[index], 6, generator=gen, dtype=torch.float64)


def loss_of(z_x: torch.Tensor, z_y: torch.Tensor) -> torch.Tensor:
    return (
        variance_loss(z_x)
        + variance_loss(z_y)
        + covariance_loss(z_x)
        + covariance_loss(z_y, denominator=7.0)
        + info_nce_loss(z_x, z_y, 0.5)
    )


def test_identity_when_not_distributed() -> None:
    assert not is_distributed() and world_size() == 1 and rank() == 0
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    result = run_gloo_workers(WORKER, tmp_path)

    model = make_model()
    data = [rank_data(i) for i in range(2)]
    x = torch.cat([d[0] for d in data])
    y = torch.cat([d[1] for d in data])
    z_x = model(x)
    loss = loss_of(z_x, model(y))
    loss.backward()
    torch.testing.assert_close(result["gathered"], z_x.detach())  # rank order, uneven sizes
    torch.testing.assert_close(result["loss"], loss.detach())
    for got, param in zip(result["grads"], model.parameters(), strict=True):
        torch.testing.assert_close(got, param.grad, rtol=1e-10, atol=1e-12)
