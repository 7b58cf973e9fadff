"""The typed batch every method, probe and training step consumes (DESIGN.md contract 3)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["Batch"]


@dataclass
class Batch:
    """K views of each of B objects and the transformations between consecutive views.

    Attributes:
        views: (B, K, C, H, W) images, float (normalised) or uint8 (normalised later, e.g. on GPU).
        transforms: (B, K-1, P) transformation parameters from view k to view k+1, e.g. the quaternion
            (x, y, z, w) of R_k^-1 R_{k+1} (P = 4), optionally followed by hue/latent deltas.
        labels: (B,) int64 class indices.
        latents: (B, K, L) absolute per-view latents (L = 7, or 10 with translations), or None.
        object_index: (B,) int64 index of each object in its split, or None.
    """

    views: Tensor
    transforms: Tensor
    labels: Tensor
    latents: Tensor | None = None
    object_index: Tensor | None = None

    def __post_init__(self) -> None:
        if self.views.ndim != 5:
            raise ValueError(f"Batch.views must be (B, K, C, H, W); got shape {tuple(self.views.shape)}")
        b, k = self.views.shape[:2]
        if self.transforms.shape[:2] != (b, k - 1) or self.transforms.ndim != 3:
            raise ValueError(
                f"Batch.transforms must be (B, K-1, P) = ({b}, {k - 1}, P); got {tuple(self.transforms.shape)}"
            )
        if self.labels.shape != (b,):
            raise ValueError(f"Batch.labels must be (B,) = ({b},); got {tuple(self.labels.shape)}")
        if self.latents is not None and self.latents.shape[:2] != (b, k):
            raise ValueError(
                f"Batch.latents must be (B, K, L) with B={b}, K={k}; got {tuple(self.latents.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return int(self.views.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.views.shape[1])

    @property
    def x(self) -> Tensor:
        """(B, C, H, W) the first view of each pair (view a)."""
        return self.views[:, 0]

    @property
    def y(self) -> Tensor:
        """(B, C, H, W) the second view (view b)."""
        return self.views[:, 1]

    @property
    def pair_transform(self) -> Tensor:
        """(B, P) transformation parameters from view a to view b."""
        return self.transforms[:, 0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with every tensor moved to ``device``."""
        moved = {
            f.name: (t.to(device, non_blocking=non_blocking) if isinstance(t, Tensor) else t)
            for f in fields(self)
            for t in [getattr(self, f.name)]
        }
        return replace(self, **moved)

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)`` for custom batch types."""
        pinned = {
            f.name: (t.pin_memory() if isinstance(t, Tensor) else t)
            for f in fields(self)
            for t in [getattr(self, f.name)]
        }
        return replace(self, **pinned)
