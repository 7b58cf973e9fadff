"""Which views of which objects each rank sees: pure functions of (seed, epoch, object index).

* :func:`sample_views` draws K distinct views per object with a counter-based generator (a
  SplitMix64 hash of ``(seed, epoch, object, view)``), vectorised over a batch. The draw of an
  object depends on nothing else, so it is the same for any number of loader workers or ranks, and
  two workers can never replay each other's stream (the reference's probe-data bug, facebookresearch/SIE; docs/evaluation.md). Sorting V hashed keys and keeping the first K gives an ordered K-tuple of distinct
  views, uniformly distributed, like ``np.random.choice(V, K, replace=False)``.
* :class:`ObjectShardSampler` permutes the objects once per epoch from ``(seed, epoch)`` and deals
  them to ranks round-robin, so the union of the ranks' step-``s`` batches is exactly the global
  step-``s`` batch of a single process with ``world_size`` times the batch size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

from sie.seeding import derive_seed

__all__ = ["ObjectShardSampler", "sample_views", "splitmix64"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser on uint64 arrays (wrapping arithmetic): a fast, well-mixed bijection."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def sample_views(seed: int, epoch: int, objects: np.ndarray, num_views: int, k: int = 2) -> np.ndarray:
    """(n, k) int64 distinct view indices in [0, num_views) for each object index in ``objects`` (n,)."""
    if not 1 <= k <= num_views:
        raise ValueError(f"cannot draw {k} distinct views out of {num_views}")
    stream = np.uint64(derive_seed(seed, "views", epoch))
    obj = np.asarray(objects, dtype=np.uint64).reshape(-1, 1)
    with np.errstate(over="ignore"):
        base = splitmix64(stream ^ splitmix64(obj))
        keys = splitmix64(base + np.arange(num_views, dtype=np.uint64) * _GOLDEN)
    return np.argsort(keys, axis=1, kind="stable")[:, :k].astype(np.int64)


class ObjectShardSampler:
    """This rank's object indices for an epoch: a permutation from ``(seed, epoch)``, dealt round-robin.

    ``uneven="pad"`` (like ``torch.utils.data.DistributedSampler``) repeats the first objects of the
    permutation so every rank gets ``ceil(N / W)``; ``"drop"`` leaves out the last ``N mod W`` of the
    permutation (different ones each epoch). With one rank neither changes anything.
    """

    def __init__(
        self,
        num_objects: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        uneven: Literal["pad", "drop"] = "pad",
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if uneven not in ("pad", "drop"):
            raise ValueError(f"uneven must be 'pad' or 'drop'; got {uneven!r}")
        self.num_objects = num_objects
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.uneven = uneven
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n, w = self.num_objects, self.world_size
        return -(-n // w) if self.uneven == "pad" else n // w

    def permutation(self, epoch: int) -> np.ndarray:
        """(N,) int64 order of all objects in ``epoch`` (identity without shuffle)."""
        if not self.shuffle:
            return np.arange(self.num_objects, dtype=np.int64)
        rng = np.random.default_rng(derive_seed(self.seed, "objects", epoch))
        return rng.permutation(self.num_objects).astype(np.int64)

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """(len(self),) int64 object indices of this rank in ``epoch`` (default: the current one)."""
        order = self.permutation(self.epoch if epoch is None else epoch)
        total = len(self) * self.world_size
        if total > len(order):
            order = np.resize(order, total)  # wraps around: repeats the first objects
        return order[:total][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())
