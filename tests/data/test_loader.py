"""Loaders: Batch contents, determinism across worker counts and world sizes, feature iteration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sie.data import Batch, iterate_all_views, make_train_loader, normalize, open_split
from sie.data.raw import decode_image
from sie.data.targets import relative_transforms
from sie.data.transforms import MEAN, STD, resize_uint8
from sie.errors import UsageError


def _epoch(loader, epoch: int) -> list[Batch]:  # type: ignore[no-untyped-def]
    loader.set_epoch(epoch)
    return list(loader)


def test_batch_contents(tiny_dataset: Path) -> None:
    source = open_split(tiny_dataset, "train")
    loader = make_train_loader(source, batch_size_per_rank=4, resolution=16, seed=3, transform="rotcolor")
    assert len(loader) == 2 and loader.transform_dim == 6  # 9 objects, drop_last
    batches = _epoch(loader, 0)
    seen = torch.cat([b.object_index for b in batches])
    assert len(set(seen.tolist())) == 8
    b = batches[0]
    assert b.views.shape == (4, 2, 3, 16, 16) and b.views.dtype == torch.float32
    assert b.transforms.shape == (4, 1, 6) and b.labels.dtype == torch.int64
    assert b.latents is not None and b.latents.shape == (4, 2, 7)
    for i, obj in enumerate(b.object_index.tolist()):
        assert b.labels[i] == int(source.labels[obj])
        # latents are the files of two distinct views, and the targets follow from them
        rows = [
            np.flatnonzero((source.latents[obj].astype(np.float32) == lat.numpy()).all(1))
            for lat in b.latents[i]
        ]
        va, vb = int(rows[0][0]), int(rows[1][0])
        assert va != vb
        torch.testing.assert_close(b.transforms[i], relative_transforms(b.latents[i], "rotcolor"))
        # and the image is that view, resized and normalised
        pixels = torch.from_numpy(decode_image(tiny_dataset / source.object_ids[obj] / f"image_{va}.jpg"))
        expected = normalize(resize_uint8(pixels.permute(2, 0, 1), 16))
        torch.testing.assert_close(b.views[i, 0], expected)


def test_uint8_views_then_device_normalisation(tiny_dataset: Path) -> None:
    source = open_split(tiny_dataset, "train")
    kwargs = {"batch_size_per_rank": 3, "seed": 0, "views_per_sample": 3}
    raw = _epoch(make_train_loader(source, normalize=False, **kwargs), 1)
    normed = _epoch(make_train_loader(source, **kwargs), 1)
    assert raw[0].views.dtype == torch.uint8 and raw[0].transforms.shape == (3, 2, 4)
    for r, n in zip(raw, normed, strict=True):
        torch.testing.assert_close(normalize(r.views), n.views)
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    torch.testing.assert_close(normalize(x)[0, :, 0, 0], (1 - torch.tensor(MEAN)) / torch.tensor(STD))


def _as_dict(batches: list[Batch]) -> dict[int, tuple[torch.Tensor, ...]]:
    out = {}
    for b in batches:
        assert b.latents is not None
        for i, obj in enumerate(b.object_index.tolist()):
            out[obj] = (b.views[i], b.transforms[i], b.latents[i])
    return out


def _assert_same(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.object_index, y.object_index)
        assert torch.equal(x.views, y.views) and torch.equal(x.transforms, y.transforms)


def test_same_batches_for_0_and_2_workers(tiny_dataset: Path) -> None:
    source = open_split(tiny_dataset, "train")
    kwargs = {"batch_size_per_rank": 2, "seed": 11, "normalize": False}
    serial = make_train_loader(source, num_workers=0, **kwargs)
    parallel = make_train_loader(source, num_workers=2, **kwargs)
    for epoch in (0, 1):
        _assert_same(_epoch(serial, epoch), _epoch(parallel, epoch))
    assert not torch.equal(_epoch(serial, 0)[0].object_index, _epoch(serial, 1)[0].object_index)


def test_two_ranks_give_the_single_process_global_batches(tiny_dataset: Path) -> None:
    source = open_split(tiny_dataset, "train")
    kwargs = {"seed": 4, "normalize": False, "drop_last": False}
    single = _epoch(make_train_loader(source, batch_size_per_rank=4, **kwargs), 2)
    ranks = [
        _epoch(make_train_loader(source, batch_size_per_rank=2, rank=r, world_size=2, **kwargs), 2)
        for r in (0, 1)
    ]
    union = _as_dict(ranks[0] + ranks[1])
    reference = _as_dict(single)
    assert set(union) == set(reference) == set(range(9))
    for obj, (views, transforms, latents) in reference.items():
        assert torch.equal(union[obj][0], views) and torch.equal(union[obj][1], transforms)
        assert torch.equal(union[obj][2], latents)
    # Step by step, the two ranks' batches together are the single process's batch.
    for s, batch in enumerate(single[:2]):
        together = torch.cat([ranks[0][s].object_index, ranks[1][s].object_index])
        assert sorted(together.tolist()) == sorted(batch.object_index.tolist())


def test_loader_rejects_bad_settings(tiny_dataset: Path) -> None:
    source = open_split(tiny_dataset, "train")
    with pytest.raises(UsageError, match="views_per_sample=6"):
        make_train_loader(source, batch_size_per_rank=2, views_per_sample=6)
    with pytest.raises(UsageError, match="exceeds the 9 objects"):
        make_train_loader(source, batch_size_per_rank=10)
    with pytest.raises(ValueError, match="unknown transform kind"):
        make_train_loader(source, batch_size_per_rank=2, transform="nope")


def test_iterate_all_views_object_major(tiny_dataset: Path) -> None:
    source = open_split(tiny_dataset, "val")
    chunks = list(iterate_all_views(source, batch_size=4, resolution=8))
    obj = torch.cat([c[1] for c in chunks])
    view = torch.cat([c[2] for c in chunks])
    assert obj.tolist() == [o for o in range(3) for _ in range(5)]
    assert view.tolist() == list(range(5)) * 3
    assert [c[0].shape[0] for c in chunks] == [4, 4, 4, 3]
    images = torch.cat([c[0] for c in chunks])
    expected = normalize(resize_uint8(source.read_views(1, [3]), 8))[0]
    torch.testing.assert_close(images[5 + 3], expected)
    parallel = list(iterate_all_views(source, batch_size=4, resolution=8, num_workers=2, normalize=False))
    torch.testing.assert_close(normalize(torch.cat([c[0] for c in parallel])), images)


@pytest.mark.parametrize(("workers", "num_workers"), [("processes", 0), ("threads", 2)])
def test_skipped_batches_are_not_read_and_the_rest_are_unchanged(
    tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch, workers: str, num_workers: int
) -> None:
    # (Worker processes could not see the patched reader; the skip happens before them, in the sampler.)
    source = open_split(tiny_dataset, "train")
    kwargs = {
        "batch_size_per_rank": 2,
        "resolution": 16,
        "seed": 5,
        "workers": workers,
        "num_workers": num_workers,
    }
    full = _epoch(make_train_loader(source, **kwargs), 3)  # type: ignore[arg-type]
    assert len(full) >= 3
    loader = make_train_loader(source, **kwargs)  # type: ignore[arg-type]
    loader.set_epoch(3)
    read: list[int] = []
    real_sample = loader.dataset.sample
    monkeypatch.setattr(loader.dataset, "sample", lambda e, objs: read.extend(objs) or real_sample(e, objs))
    loader.skip_batches(2)
    rest = list(loader)
    assert len(rest) == len(full) - 2
    for a, b in zip(full[2:], rest, strict=True):
        torch.testing.assert_close(a.views, b.views)
        torch.testing.assert_close(a.object_index, b.object_index)
    skipped = {int(o) for batch in full[:2] for o in batch.object_index}
    assert read and not skipped & set(read)  # the first two batches' objects were never read
    assert len(list(loader)) == len(full)  # the skip applies to one iteration only
    with pytest.raises(ValueError, match="cannot skip"):
        loader.skip_batches(len(full) + 1)
