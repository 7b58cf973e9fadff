"""Seeding: one call seeds Python, numpy and torch; derived seeds are pure functions of their inputs."""

from __future__ import annotations

import hashlib
import random

import numpy as np

__all__ = ["derive_seed", "seed_everything"]


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed ``random``, numpy's global RNG and torch (CPU and CUDA).

    ``deterministic`` also asks torch for deterministic kernels (slower; used by exact-resume tests).
    """
    import torch  # here, not at the top: render workers use derive_seed and never need torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends only on ``parts`` (e.g. ``(seed, epoch, sample_index)``).

    Hash-based rather than arithmetic so that nearby inputs give unrelated streams, and identical
    on every machine, process, worker count and rank.
    """
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1
