"""View sampling and object sharding: pure functions of (seed, epoch, object index)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sie.data.sampling import ObjectShardSampler, sample_views, splitmix64


def test_splitmix64_known_value() -> None:
    # SplitMix64's first output for state 0 (the generator adds the golden gamma, then mixes).
    assert int(splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF


def test_views_distinct_pure_and_independent_of_batch_composition() -> None:
    objs = np.arange(200)
    views = sample_views(0, 3, objs, num_views=50, k=4)
    assert views.shape == (200, 4) and views.dtype == np.int64
    assert all(len(set(row)) == 4 for row in views.tolist())
    assert ((views >= 0) & (views < 50)).all()
    np.testing.assert_array_equal(views, sample_views(0, 3, objs, 50, 4))
    # An object's draw does not depend on which other objects share its batch, nor on their order.
    np.testing.assert_array_equal(sample_views(0, 3, objs[[17, 5]], 50, 4), views[[17, 5]])
    assert not np.array_equal(sample_views(0, 4, objs, 50, 4), views)  # another epoch
    assert not np.array_equal(sample_views(1, 3, objs, 50, 4), views)  # another seed


def test_views_uniform_over_ordered_pairs() -> None:
    """All 5 * 4 = 20 ordered pairs of distinct views equally likely (chi-square, fixed draw)."""
    views = sample_views(7, 0, np.arange(20000), num_views=5, k=2)
    counts = Counter(map(tuple, views.tolist()))
    assert len(counts) == 20
    expected = 20000 / 20
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 43.8  # 99.9th percentile of chi-square with 19 degrees of freedom


def test_too_many_views_rejected() -> None:
    with pytest.raises(ValueError, match="3 distinct views out of 2"):
        sample_views(0, 0, np.arange(3), num_views=2, k=3)


@pytest.mark.parametrize("num_objects", [10, 11, 12, 13])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_sharding_covers_each_object_once_per_epoch(num_objects: int, world_size: int) -> None:
    for epoch in (0, 1):
        shards = []
        for rank in range(world_size):
            s = ObjectShardSampler(num_objects, world_size=world_size, rank=rank, seed=5)
            s.set_epoch(epoch)
            shards.append(list(s))
            assert len(shards[-1]) == len(s)
        assert len({len(x) for x in shards}) == 1  # equal length on every rank
        flat = [o for shard in shards for o in shard]
        counts = Counter(flat)
        assert set(counts) == set(range(num_objects))  # every object, at least once
        pad = len(flat) - num_objects
        assert pad == (-num_objects) % world_size
        assert sum(c - 1 for c in counts.values()) == pad  # repeats are exactly the padding
        dropped = []
        for rank in range(world_size):
            s = ObjectShardSampler(num_objects, world_size=world_size, rank=rank, seed=5, uneven="drop")
            s.set_epoch(epoch)
            dropped += list(s)
        assert len(dropped) == len(set(dropped)) == num_objects - num_objects % world_size


def test_permutation_changes_per_epoch_and_is_shared_by_ranks() -> None:
    s0 = ObjectShardSampler(100, world_size=2, rank=0, seed=1)
    s1 = ObjectShardSampler(100, world_size=2, rank=1, seed=1)
    np.testing.assert_array_equal(s0.permutation(3), s1.permutation(3))
    assert not np.array_equal(s0.permutation(3), s0.permutation(4))
    np.testing.assert_array_equal(ObjectShardSampler(7, shuffle=False).indices(2), np.arange(7))
    with pytest.raises(ValueError, match="rank 2"):
        ObjectShardSampler(5, world_size=2, rank=2)
