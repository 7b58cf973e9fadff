"""Synchronised BatchNorm that also runs on CPU with gloo (PyTorch's SyncBatchNorm needs a GPU).

Under DDP every rank sees only its share of the batch; synchronised BatchNorm normalises with the
statistics of the whole global batch, so a 2-process run computes what 1 process computes on the
concatenated batch (the property the DDP equivalence test checks). The statistics are reduced with
a differentiable all-reduce: its backward all-reduces the incoming gradients, so every rank receives
the gradient of the global loss with respect to its own inputs, and DDP's gradient averaging then
gives the exact single-process gradient (the same argument as for ``gather_with_grad``).

Two reductions per layer (sum and count, then the centred sum of squares) rather than one of
``sum x`` and ``sum x^2``: the one-pass variance loses precision when the mean is large relative to
the spread. This module is meant for CPU runs and tests; CUDA runs use ``torch.nn.SyncBatchNorm``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["SyncBatchNormCPU", "all_reduce_sum_with_grad", "convert_to_sync_batchnorm"]


class _AllReduceSum(torch.autograd.Function):
    """Forward: sum over ranks. Backward: sum over ranks of the incoming gradients."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


def all_reduce_sum_with_grad(x: Tensor) -> Tensor:
    """Sum of ``x`` over ranks, differentiable (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    out: Tensor = _AllReduceSum.apply(x)
    return out


class SyncBatchNormCPU(_BatchNorm):
    """BatchNorm over the global batch of all ranks; any input (N, C, ...) with N x spatial > 0.

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm{1,2,3}d``. In eval mode, or when
    not distributed, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed):
            return super().forward(input)
        channels = input.shape[1]
        reduce_dims = [0, *range(2, input.dim())]
        shape = [1, channels] + [1] * (input.dim() - 2)
        x = input.float()  # statistics in fp32 even under autocast, as BatchNorm does
        local_count = torch.tensor([input.numel() // channels], dtype=x.dtype, device=x.device)
        sums = all_reduce_sum_with_grad(torch.cat([x.sum(reduce_dims), local_count]))
        count = sums[-1].detach()
        mean = sums[:channels] / count
        centred = x - mean.view(shape)
        var = all_reduce_sum_with_grad(centred.pow(2).sum(reduce_dims)) / count  # biased, as BN normalises
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked) if self.momentum is None else float(self.momentum)
                )
                unbiased = var.detach() * (count / (count - 1.0).clamp_min(1.0))  # no host read
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return out.to(input.dtype)


def convert_to_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm{1,2,3}d in ``module`` by :class:`SyncBatchNormCPU`, sharing parameters.

    Returns the converted module (a new object only when ``module`` itself is a BatchNorm layer).
    """
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNormCPU):
        sync = SyncBatchNormCPU(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            sync.weight = module.weight
            sync.bias = module.bias
        sync.running_mean = module.running_mean
        sync.running_var = module.running_var
        sync.num_batches_tracked = module.num_batches_tracked
        sync.train(module.training)
        return sync
    for name, child in module.named_children():
        converted = convert_to_sync_batchnorm(child)
        if converted is not child:
            module.add_module(name, converted)
    return module
