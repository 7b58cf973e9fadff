"""Image transforms of the 3DIEBench pipeline: antialiased resize and normalisation.

The reference applies ``Resize((R, R))`` then ``ToTensor()`` and ``Normalize(MEAN, STD)`` with the
3DIEBench constants below (facebookresearch/SIE; docs/training.md) and **no augmentation**. Here the resize works on
uint8 tensors (antialiased bilinear, torchvision's uint8 kernel) so that the raw-layout loader and
the packed store (which stores images already resized to R) give identical bytes, and normalisation
is a separate step that can run in the loader workers or on the device (``normalize=False`` in the
loader, then :func:`normalize` on the GPU batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.transforms.v2.functional as tvf
from torch import Tensor

__all__ = ["MEAN", "STD", "normalize", "resize_uint8"]

MEAN: tuple[float, float, float] = (0.5016, 0.5037, 0.5060)
"""Per-channel mean of 3DIEBench images in [0, 1] (RGB), as in the reference code."""
STD: tuple[float, float, float] = (0.1030, 0.0999, 0.0969)
"""Per-channel standard deviation of 3DIEBench images in [0, 1] (RGB), as in the reference code."""


def resize_uint8(images: Tensor, resolution: int) -> Tensor:
    """Antialiased bilinear resize of uint8 images (..., 3, H, W) to (..., 3, R, R); no-op at R = H = W.

    Deterministic and identical wherever it runs, so ``sie pack`` and the raw loader agree bit for bit.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"resize_uint8 expects uint8 images; got {images.dtype}")
    if images.shape[-2:] == (resolution, resolution):
        return images
    resized: Tensor = tvf.resize(images, [resolution, resolution], antialias=True)
    return resized


def normalize(
    images: Tensor,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    dtype: torch.dtype = torch.float32,
    *,
    out: Tensor | None = None,
) -> Tensor:
    """(..., 3, H, W) uint8 in [0, 255] or float in [0, 1] -> float ``(x - mean) / std``, per channel.

    Runs on whatever device ``images`` is on (e.g. after a uint8 batch reaches the GPU, which moves
    4x fewer bytes than float32). ``out`` (same shape, a float dtype) receives the result if given.
    """
    if images.shape[-3] != len(mean):
        raise ValueError(f"normalize expects (..., {len(mean)}, H, W) images; got {tuple(images.shape)}")
    dtype = out.dtype if out is not None else dtype
    # x * (1 / (range * std)) - mean / std, in place on the converted copy (the fastest form on CPU).
    pixel_range = 255.0 if images.dtype == torch.uint8 else 1.0
    m = torch.as_tensor(mean, dtype=torch.float64).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float64).view(-1, 1, 1)
    scale = (1.0 / (pixel_range * s)).to(dtype=dtype, device=images.device)
    shift = (m / s).to(dtype=dtype, device=images.device)
    if out is None:
        out = images.to(dtype, copy=True)
    else:
        out.copy_(images)
    return out.mul_(scale).sub_(shift)
