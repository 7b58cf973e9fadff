"""Heads on top of a backbone: the projector ("expander"), its split widths, AugSelf, a linear classifier.

All heads take (N, in_dim) and return (N, out_dim); none squeezes, so a batch of one keeps its batch
dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["AugSelfHead", "LinearClassifier", "Projector", "mlp", "split_widths"]


def mlp(in_dim: int, widths: Sequence[int], *, batch_norm: bool, last_bias: bool) -> nn.Sequential:
    """``Linear -> [BN] -> ReLU`` for every width but the last, then a plain ``Linear``.

    Args:
        in_dim: input features.
        widths: output width of each linear layer (at least one).
        batch_norm: a BatchNorm1d after every hidden linear layer.
        last_bias: whether the last linear layer has a bias.
    """
    if not widths:
        raise ValueError("an MLP needs at least one layer width")
    if in_dim <= 0 or any(w <= 0 for w in widths):
        raise ValueError(f"layer widths must be positive; got in_dim={in_dim}, widths={list(widths)}")
    layers: list[nn.Module] = []
    dims = [in_dim, *widths]
    for index in range(len(widths) - 1):
        layers.append(nn.Linear(dims[index], dims[index + 1]))
        if batch_norm:
            layers.append(nn.BatchNorm1d(dims[index + 1]))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Linear(dims[-2], dims[-1], bias=last_bias))
    return nn.Sequential(*layers)


class Projector(nn.Sequential):
    """The reference projector ``Projector(in_dim, "a-b-c")``: (N, in_dim) -> (N, c).

    ``Linear(in, a) - BN - ReLU - Linear(a, b) - BN - ReLU - Linear(b, c, bias=False)``: BN and ReLU
    after every layer but the last, which has no bias and no activation.
    """

    def __init__(self, in_dim: int, widths: Sequence[int]) -> None:
        super().__init__(*mlp(in_dim, widths, batch_norm=True, last_bias=False))
        self.in_dim = in_dim
        self.out_dim = int(widths[-1])


def split_widths(widths: Sequence[int], equi: int, repr_dim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split projector widths between the invariant and equivariant parts in proportion to their dims.

    As the reference: ``inv = round(w * (repr_dim - equi) / repr_dim)`` and
    ``equi = round(w * equi / repr_dim)``, element-wise, with numpy's rounding (half to even), so
    e.g. 2048-2048-2048 with equi 256 of 512 gives 1024-1024-1024 for both parts.

    Args:
        widths: the full projector widths, e.g. (2048, 2048, 2048).
        equi: representation dims in the equivariant part, 0 < equi < repr_dim.
        repr_dim: representation dims (512 for ResNet-18).

    Returns:
        ``(inv_widths, equi_widths)``. A width that rounds to 0 raises ValueError.
    """
    if not 0 < equi < repr_dim:
        raise ValueError(f"equi={equi} must be in (0, {repr_dim})")
    full = np.asarray(widths, dtype=np.float64)
    inv_widths = tuple(int(w) for w in np.round(full * (repr_dim - equi) / repr_dim))
    equi_widths = tuple(int(w) for w in np.round(full * equi / repr_dim))
    if min(inv_widths) <= 0 or min(equi_widths) <= 0:
        raise ValueError(
            f"widths {list(widths)} split for equi={equi} of {repr_dim} give a zero width "
            f"(inv {list(inv_widths)}, equi {list(equi_widths)})"
        )
    return inv_widths, equi_widths


class AugSelfHead(nn.Module):
    """AugSelf's transformation regressor on a pair of representations: (N, D), (N, D) -> (N, P).

    ``phi(concat(h_a, h_b))`` with ``Linear(2D, w1) - ReLU - ... - Linear(wk, P)``; the reference uses
    hidden widths 1024-1024 (no BN, biases everywhere).
    """

    def __init__(self, repr_dim: int, out_dim: int, hidden: Sequence[int] = (1024, 1024)) -> None:
        super().__init__()
        self.net = mlp(2 * repr_dim, [*hidden, out_dim], batch_norm=False, last_bias=True)

    def forward(self, h_a: Tensor, h_b: Tensor) -> Tensor:
        """h_a, h_b (N, D) -> predicted transformation parameters (N, P)."""
        out: Tensor = self.net(torch.cat([h_a, h_b], dim=1))
        return out


class LinearClassifier(nn.Linear):
    """A linear classifier on representations: (N, D) -> logits (N, num_classes)."""

    def __init__(self, repr_dim: int, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes} must be >= 2")
        super().__init__(repr_dim, num_classes)
