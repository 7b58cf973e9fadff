"""Process-group queries and an all-gather that passes gradients back to every rank.

Nothing here initialises a process group (the training engine does, from torchrun's environment);
every function works, as the single-process identity, when ``torch.distributed`` is not initialised.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_with_grad", "is_distributed", "rank", "world_size"]


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return int(dist.get_world_size()) if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default group (0 when not distributed)."""
    return int(dist.get_rank()) if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's rows. Backward: sum the incoming gradients over ranks, keep ours.

    Every rank computes the same loss on the gathered tensor, so the gradient with respect to this
    rank's rows is the sum over ranks of what each rank's loss sends back to them; combined with
    DDP's gradient *averaging* over ranks this reproduces the single-process gradient of the loss on
    the whole batch (the reference's ``FullGatherLayer``). Ranks may hold different numbers of rows.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        sizes = torch.tensor([x.shape[0]], device=x.device)
        all_sizes = [torch.zeros_like(sizes) for _ in range(dist.get_world_size())]
        dist.all_gather(all_sizes, sizes)
        counts = [int(s.item()) for s in all_sizes]
        largest = max(counts)
        padded = x.new_zeros((largest, *x.shape[1:]))
        padded[: x.shape[0]] = x
        chunks = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(chunks, padded.contiguous())
        me = dist.get_rank()
        ctx.start = sum(counts[:me])
        ctx.count = counts[me]
        return torch.cat([chunk[:count] for chunk, count in zip(chunks, counts, strict=True)], dim=0)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.start + ctx.count]


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather ``x`` (n_r, ...) from every rank into (sum_r n_r, ...), rank order, with gradients.

    The identity when not distributed. See :class:`_GatherWithGrad` for the gradient rule.
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    out: Tensor = _GatherWithGrad.apply(x)
    return out
