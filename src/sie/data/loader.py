"""Training and feature-extraction loaders over a :class:`~sie.data.source.ViewSource`.

:func:`make_train_loader` yields :class:`~sie.data.batch.Batch` es of K views per object, with the
transformation parameters between consecutive views computed once per batch (vectorised, see
:mod:`sie.data.targets`). A batch is built whole inside one worker (``Dataset.__getitems__``), so
the object order comes from :class:`~sie.data.sampling.ObjectShardSampler` in the main process and
the views from :func:`~sie.data.sampling.sample_views`; both are pure functions of (seed, epoch,
object index), hence identical for any ``num_workers`` and ``world_size``.

Like the reference, the angles are rounded to float32 before the relative rotation is computed
(``latent[:3]`` is cast to float32 there), then the maths runs in float64 and the targets are float32.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, get_worker_info

from sie.data.batch import Batch
from sie.data.sampling import ObjectShardSampler, sample_views
from sie.data.source import ViewSource
from sie.data.targets import relative_transforms, transform_dim
from sie.data.transforms import normalize as normalize_images
from sie.data.transforms import resize_uint8
from sie.errors import UsageError
from sie.log import get_logger

__all__ = ["TrainLoader", "ViewSampleDataset", "iterate_all_views", "make_train_loader"]

_log = get_logger(__name__)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the workers already use every core; avoid oversubscription


def _as_is(batch: Any) -> Any:
    return batch


def _empty(shape: Sequence[int], dtype: torch.dtype, *, shared: bool) -> Tensor:
    out = torch.empty(tuple(shape), dtype=dtype)
    return out.share_memory_() if shared else out  # type: ignore[no-untyped-call]


class ViewSampleDataset(Dataset[Batch]):
    """K distinct views of an object plus the transformations between them; keys are (epoch, object)."""

    def __init__(
        self,
        source: ViewSource,
        *,
        views_per_sample: int = 2,
        transform: str = "quat",
        canonical: bool = False,
        resolution: int | None = None,
        seed: int = 0,
        normalize: bool = True,
    ) -> None:
        if not 2 <= views_per_sample <= source.views_per_object:
            raise UsageError(
                f"data.views_per_sample={views_per_sample}: expected 2..{source.views_per_object} "
                f"(objects of {source.root} have {source.views_per_object} views)"
            )
        transform_dim(transform, source.latent_size)  # validates the kind
        self.source = source
        self.views_per_sample = views_per_sample
        self.transform = transform
        self.canonical = canonical
        self.resolution = resolution or source.image_size[0]
        self.seed = seed
        self.normalize = normalize

    @property
    def transform_dim(self) -> int:
        return transform_dim(self.transform, self.source.latent_size)

    def __len__(self) -> int:
        return self.source.num_objects

    def sample(self, epoch: int, objects: Sequence[int]) -> Batch:
        """The batch of ``objects`` (B,) in ``epoch``: views (B, K, 3, R, R), transforms (B, K-1, P), ..."""
        src, k = self.source, self.views_per_sample
        objs = np.asarray(objects, dtype=np.int64)
        views = sample_views(self.seed, epoch, objs, src.views_per_object, k)
        # In a worker process, outputs are allocated in shared memory straight away, so handing the
        # batch to the main process does not copy it again.
        shared = get_worker_info() is not None
        r = self.resolution
        images = _empty((len(objs), k, 3, r, r), torch.uint8, shared=shared and not self.normalize)
        for i, (o, v) in enumerate(zip(objs, views, strict=True)):
            images[i] = resize_uint8(src.read_views(int(o), v.tolist()), r)
        if self.normalize:
            images = normalize_images(images, out=_empty(images.shape, torch.float32, shared=shared))
        latents = np.stack([src.read_latents(int(o), v.tolist()) for o, v in zip(objs, views, strict=True)])
        latents32 = latents.astype(np.float32)  # the reference's float32 angles
        return Batch(
            views=images,
            transforms=relative_transforms(latents32, self.transform, self.canonical),
            labels=torch.from_numpy(src.labels[objs]),
            latents=torch.from_numpy(latents32),
            object_index=torch.from_numpy(objs),
        )

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> Batch:
        epochs = {e for e, _ in keys}
        if len(epochs) != 1:
            raise ValueError(f"one batch must come from one epoch; got epochs {sorted(epochs)}")
        return self.sample(epochs.pop(), [o for _, o in keys])

    def __getitem__(self, key: tuple[int, int]) -> Batch:
        return self.__getitems__([key])


class _EpochBatches:
    """Batches of (epoch, object) keys for one rank; the epoch is set by :meth:`TrainLoader.set_epoch`."""

    def __init__(self, sampler: ObjectShardSampler, batch_size: int, drop_last: bool) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.start = 0  # batches the next iteration leaves out (then back to 0)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.sampler.epoch
        objs = self.sampler.indices(epoch).tolist()
        start, self.start = self.start, 0
        for step in range(start, len(self)):
            yield [(epoch, o) for o in objs[step * self.batch_size : (step + 1) * self.batch_size]]


def _threaded(
    dataset: ViewSampleDataset, batches: Iterable[list[tuple[int, int]]], threads: int, pin_memory: bool
) -> Iterator[Batch]:
    """Build batches in ``threads`` threads, yielded in order, at most ``2 * threads`` in flight."""

    def build(keys: list[tuple[int, int]]) -> Batch:
        batch = dataset.__getitems__(keys)
        return batch.pin_memory() if pin_memory else batch

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sie-loader") as pool:
        pending: deque[Future[Batch]] = deque()
        for keys in batches:
            pending.append(pool.submit(build, keys))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class TrainLoader:
    """Iterable over one epoch of :class:`Batch` es of this rank; call :meth:`set_epoch` before each epoch.

    ``workers="processes"`` uses a ``torch.utils.data.DataLoader`` with ``num_workers`` processes (for
    JPEG decoding); ``"threads"`` builds batches in ``num_workers`` threads of this process, which
    avoids copying every batch between processes (the bottleneck once reads are memory-mapped).
    """

    def __init__(
        self,
        dataset: ViewSampleDataset,
        sampler: ObjectShardSampler,
        batch_size: int,
        *,
        drop_last: bool,
        num_workers: int,
        pin_memory: bool,
        workers: Literal["processes", "threads"] = "processes",
    ) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.batches = _EpochBatches(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.workers = workers
        self.pin_memory = pin_memory
        self._loader: DataLoader[Batch] = DataLoader(
            dataset,
            batch_sampler=self.batches,
            collate_fn=_as_is,
            num_workers=num_workers if workers == "processes" else 0,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0 and workers == "processes",
            worker_init_fn=_worker_init if num_workers > 0 and workers == "processes" else None,
        )

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    @property
    def transform_dim(self) -> int:
        return self.dataset.transform_dim

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def skip_batches(self, count: int) -> None:
        """Make the next iteration start at batch ``count`` of the epoch, without reading the first
        ``count`` (a resumed run's already-trained batches). The batches that follow are the same as
        in a full iteration: every batch depends only on (seed, epoch, object index)."""
        if not 0 <= count <= len(self.batches):
            raise ValueError(f"cannot skip {count} of the epoch's {len(self.batches)} batches")
        self.batches.start = count

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        if self.workers == "threads" and self.num_workers > 0:
            return _threaded(self.dataset, self.batches, self.num_workers, self.pin_memory)
        return iter(self._loader)


def make_train_loader(
    source: ViewSource,
    *,
    batch_size_per_rank: int,
    views_per_sample: int = 2,
    transform: str = "quat",
    canonical: bool = False,
    resolution: int | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    drop_last: bool = True,
    normalize: bool = True,
    shuffle: bool = True,
    uneven: Literal["pad", "drop"] = "pad",
    pin_memory: bool | None = None,
    workers: Literal["auto", "processes", "threads"] = "auto",
) -> TrainLoader:
    """A loader of this rank's batches of ``views_per_sample`` views per object, one sample per object per epoch.

    Args:
        source: from :func:`sie.data.open_split` (raw layout or packed store).
        batch_size_per_rank: objects per batch on this rank (global batch / world_size).
        transform, canonical: target kind and quaternion sign convention (:mod:`sie.data.targets`).
        resolution: output side R in px (antialiased resize; default: the source's own size).
        seed: with the epoch and the object index, decides the object order and the views.
        rank, world_size: this process's shard of every epoch's objects (see ``uneven``).
        num_workers: loader processes (0: in this process); results do not depend on it.
        drop_last: drop this rank's last incomplete batch (every rank has the same number of steps).
        normalize: yield float32 views normalised with the 3DIEBench mean/std; False yields uint8 views
            to be normalised on the device with :func:`sie.data.transforms.normalize`.
        shuffle: a new object order every epoch (False: split order, e.g. for evaluation).
        uneven: ``pad`` (repeat objects so all ranks get ceil(N/W)) or ``drop`` (leave N mod W out).
        pin_memory: default: when CUDA is available.
        workers: ``processes`` (DataLoader workers) or ``threads``; ``auto`` picks threads for sources
            whose reads are cheap memory copies (packed stores) and processes for JPEG decoding.
    """
    if batch_size_per_rank < 1:
        raise UsageError(f"batch size per rank {batch_size_per_rank}: expected >= 1")
    if num_workers < 0:
        raise UsageError(f"data.num_workers={num_workers}: expected >= 0")
    if resolution is not None and resolution > min(source.image_size):
        _log.warning(
            "resolution %d px exceeds the %dx%d px images of %s: they are upsampled (images of at "
            "least %d px avoid it)",
            resolution,
            source.image_size[1],
            source.image_size[0],
            source.root,
            resolution,
        )
    dataset = ViewSampleDataset(
        source,
        views_per_sample=views_per_sample,
        transform=transform,
        canonical=canonical,
        resolution=resolution,
        seed=seed,
        normalize=normalize,
    )
    sampler = ObjectShardSampler(
        source.num_objects, world_size=world_size, rank=rank, seed=seed, shuffle=shuffle, uneven=uneven
    )
    loader = TrainLoader(
        dataset,
        sampler,
        batch_size_per_rank,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        workers=("threads" if source.memory_mapped else "processes") if workers == "auto" else workers,
    )
    if len(loader) == 0:
        raise UsageError(
            f"batch size per rank {batch_size_per_rank} exceeds the {len(sampler)} objects per rank of "
            f"{source.root} [{source.split}] with drop_last; use a smaller batch"
        )
    return loader


class _ViewChunks(Dataset[tuple[Tensor, Tensor, Tensor]]):
    """Chunk c = flat views [c*B, (c+1)*B) of the object-major (object, view) order."""

    def __init__(self, source: ViewSource, batch_size: int, resolution: int, normalize: bool) -> None:
        self.source = source
        self.batch_size = batch_size
        self.resolution = resolution
        self.normalize = normalize
        self.total = source.num_objects * source.views_per_object

    def __len__(self) -> int:
        return -(-self.total // self.batch_size)

    def __getitem__(self, chunk: int) -> tuple[Tensor, Tensor, Tensor]:
        v = self.source.views_per_object
        flat = np.arange(chunk * self.batch_size, min((chunk + 1) * self.batch_size, self.total))
        objs, views = flat // v, flat % v
        parts = [
            resize_uint8(self.source.read_views(int(obj), views[objs == obj].tolist()), self.resolution)
            for obj in np.unique(objs)
        ]
        images = torch.cat(parts).contiguous()
        out = normalize_images(images) if self.normalize else images
        return out, torch.from_numpy(objs), torch.from_numpy(views)


def iterate_all_views(
    source: ViewSource,
    *,
    batch_size: int,
    resolution: int | None = None,
    normalize: bool = True,
    num_workers: int = 0,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Every view of every object, object-major: ``(images (n, 3, R, R), obj_idx (n,), view_idx (n,))``.

    For feature extraction; ``n = batch_size`` except in the last chunk.
    """
    if batch_size < 1:
        raise UsageError(f"batch size {batch_size}: expected >= 1")
    chunks = _ViewChunks(source, batch_size, resolution or source.image_size[0], normalize)
    loader: DataLoader[tuple[Tensor, Tensor, Tensor]] = DataLoader(
        chunks,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=_worker_init if num_workers > 0 else None,
    )
    yield from loader
