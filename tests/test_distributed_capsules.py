"""EquiCaps' and CapsIE's gathered terms (MEMAX over the batch-mean activation, variance and covariance of
[activations, poses]): 2 gloo processes with different rows per rank (3 and 5) == one process on all rows,
with DDP's gradient averaging (the pattern of tests/test_distributed.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch
from tests.helpers.gloo import run_gloo_workers
from torch import nn

from sie.methods.capsie import capsie_invariance
from sie.methods.equicaps import equicaps_loss

ROWS = (3, 5)
K = 3

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[4])
    from tests.test_distributed_capsules import gathered_terms, make_model, rank_data

    me, world, init_file, _root, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=me, world_size=world)
    model = make_model()
    loss = gathered_terms(model, *rank_data(me))
    loss.backward()
    grads = []
    for p in model.parameters():
        dist.all_reduce(p.grad)  # DDP: average of the ranks' gradients
        grads.append(p.grad / world)
    if me == 0:
        torch.save({"grads": grads, "loss": loss.detach()}, out)
    dist.destroy_process_group()
    """
)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(6, K + K * 9).double()


def rank_data(index: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(200 + index)
    x = torch.randn(ROWS[index], 6, generator=gen, dtype=torch.float64) + 2.0 * index
    return x, x + 0.3 * torch.randn(ROWS[index], 6, generator=gen, dtype=torch.float64)


def gathered_terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out_x, out_y = model(x), model(y)
    a_x, a_y = torch.softmax(out_x[:, :K], dim=1), torch.softmax(out_y[:, :K], dim=1)
    u_x, u_y = out_x[:, K:].reshape(-1, K, 3, 3), out_y[:, K:].reshape(-1, K, 3, 3)
    g = torch.eye(3, dtype=torch.float64).expand(len(x), 3, 3)
    terms = equicaps_loss(a_x, a_y, u_x, u_y, g, None)
    memax_capsie = capsie_invariance(a_x, a_y, 0.5, 0.25)[1]
    return terms["loss/memax"] + terms["loss/std"] + terms["loss/cov"] + memax_capsie


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    result = run_gloo_workers(WORKER, tmp_path)
    model = make_model()
    data = [rank_data(i) for i in range(2)]
    loss = gathered_terms(model, torch.cat([d[0] for d in data]), torch.cat([d[1] for d in data]))
    loss.backward()
    torch.testing.assert_close(result["loss"], loss.detach())
    for got, param in zip(result["grads"], model.parameters(), strict=True):
        torch.testing.assert_close(got, param.grad, rtol=1e-9, atol=1e-12)
