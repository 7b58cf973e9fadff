"""``render_dataset``: plan, shard, render with worker processes, resume, finalise (splits, manifest, preview).

Determinism: an object's latents come from a seed derived from (generator seed, class, object),
its mesh from the source (procedural shapes from (class, instance, seed)), and the renderer is a
pure function of both, so image bytes and latents do not depend on the number of workers, on
sharding, or on the order in which objects are done.

Sharding: shard ``i`` of ``N`` renders the plan's objects whose index is ``i`` modulo ``N``. Each
shard writes whole objects atomically; the shard that finds every planned object done (or
skipped) writes the split files, the complete ``dataset.json`` and ``preview.png``. Running the
same command again resumes: finished objects are skipped, and a complete dataset is left as is.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sie import __version__
from sie.config import RenderConfig, config_from_dict, config_to_dict
from sie.errors import UsageError, WorkFailed
from sie.log import format_duration, get_logger
from sie.render.backends import Renderer, create_renderer, resolve_backend_name
from sie.render.latents import FACTORS, latent_size, orbit_latents, sample_latents
from sie.render.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    check_output_dir,
    content_config,
    dataset_identity,
    read_manifest,
    remove_work_dirs,
    split_after_skipping,
    write_json_atomic,
    write_split_files,
)
from sie.render.mesh import MeshProblem
from sie.render.plan import PlannedObject, RenderPlan, build_plan, latent_seed
from sie.render.preview import dataset_contact_sheet
from sie.render.scene import views_from_latents
from sie.render.settings import check_render_config, factor_ranges, render_settings, scene_spec
from sie.render.sources import ObjectSource, open_source
from sie.render.writer import ObjectWriter, object_done, read_notes, write_note

__all__ = ["ObjectResult", "RenderSummary", "object_latents", "render_dataset"]

_log = get_logger(__name__)
_LOG_EVERY_S = 30.0


@dataclass(frozen=True)
class ObjectResult:
    """What happened to one object: ``rendered``, ``exists`` (done by someone else) or ``bad``."""

    key: str
    status: str
    images: int = 0
    file: str = ""
    reason: str = ""
    watertight: bool | None = None


@dataclass(frozen=True)
class RenderSummary:
    """Outcome of one ``render_dataset`` call (one shard)."""

    root: Path
    rendered: int
    skipped: int
    already_done: int
    images: int
    seconds: float
    complete: bool
    workers: int
    backend: dict[str, str]

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def object_latents(cfg: RenderConfig, class_id: str, object_id: str) -> np.ndarray:
    """(views, 7|10) float64 latents of one object: a pure function of the config and the object."""
    rng = np.random.default_rng(latent_seed(cfg.seed, class_id, object_id))
    ranges = factor_ranges(cfg)
    if cfg.orbit_factor:
        return orbit_latents(rng, cfg.orbit_factor, cfg.views, cfg.variant, ranges)
    return sample_latents(rng, cfg.views, cfg.variant, ranges)


_VIEWS_PER_CHUNK = 10
"""Views rendered per call by a CPU worker; the previous chunk's files are written meanwhile. A GPU
renders all of an object's views in one launch: chunks of 10 small images would leave it mostly idle."""

# ---- the work of one process ----------------------------------------------------------------------


class _Worker:
    """Per-process state: the source, the renderer and where to write."""

    def __init__(self, cfg: RenderConfig, root: Path, backend: str, device: str) -> None:
        self.cfg = cfg
        self.root = root
        self.source: ObjectSource = open_source(cfg.source, seed=cfg.seed, up_axis=cfg.mesh_up_axis)
        self.renderer: Renderer = create_renderer(backend, render_settings(cfg), scene_spec(cfg), device)
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sie-render-write")

    def close(self) -> None:
        """Stop the writer thread (worker processes simply exit)."""
        self._writes.shutdown(wait=True)

    def render(self, obj: PlannedObject) -> ObjectResult:
        key = obj.key
        if object_done(self.root, key):
            return ObjectResult(key, "exists")
        try:
            mesh = self.source.load(obj.ref)
        except MeshProblem as exc:
            return ObjectResult(key, "bad", file=obj.ref.locator, reason=str(exc))
        except Exception as exc:  # any other failure on one file is that object's, not the run's
            return _failed(obj, "cannot load it", exc)
        if self.cfg.require_watertight and mesh.watertight is False:
            return ObjectResult(
                key, "bad", file=obj.ref.locator, reason=f"{obj.ref.locator}: mesh is not watertight"
            )
        latents = object_latents(self.cfg, obj.ref.class_id, obj.ref.object_id)
        try:
            self.renderer.set_mesh(mesh)
        except Exception as exc:  # e.g. MemoryError: the object is refused, the run goes on
            return _failed(obj, "cannot render it", exc)
        writer = ObjectWriter(
            self.root,
            key,
            threads=self._writes,
            jpeg_quality=self.cfg.jpeg_quality,
            swap_red_blue=self.cfg.swap_red_blue,
        )
        per_call = _VIEWS_PER_CHUNK if self.renderer.device == "cpu" else len(latents)
        try:
            # Chunks of views: one chunk's JPEGs are written while the next one renders.
            for start in range(0, len(latents), per_call):
                chunk = latents[start : start + per_call]
                try:
                    images = self.renderer.render(views_from_latents(chunk)).images
                except Exception as exc:
                    writer.abort()
                    return _failed(obj, "cannot render it", exc)
                writer.add(start, images, chunk)
        except BaseException:
            writer.abort()
            raise
        written = writer.commit()  # a failed write (disk full) is the run's failure, not the object's
        return ObjectResult(
            key, "rendered" if written else "exists", len(latents), obj.ref.locator, "", mesh.watertight
        )


def _failed(obj: PlannedObject, what: str, exc: BaseException) -> ObjectResult:
    """The ``bad`` result of an object whose loading or rendering raised ``exc``."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ObjectResult(obj.key, "bad", file=obj.ref.locator, reason=f"{obj.ref.locator}: {what} ({detail})")


_WORKER: _Worker | None = None


def _init_worker(cfg_dict: dict[str, Any], root: str, backend: str, device: str) -> None:
    global _WORKER
    torch = sys.modules.get("torch")  # render workers do not need PyTorch, but one core each is the plan
    if torch is not None:
        torch.set_num_threads(1)
    cfg = config_from_dict(cfg_dict, cls=RenderConfig, source="render worker")
    _WORKER = _Worker(cfg, Path(root), backend, device)


def _work(obj: PlannedObject) -> ObjectResult:
    assert _WORKER is not None, "worker used before its initializer ran"
    return _WORKER.render(obj)


# ---- orchestration -------------------------------------------------------------------------------


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    from sie.device import default_device_name

    return default_device_name()


def _worker_count(requested: int, device: str, todo: int) -> int:
    if requested <= 0:
        requested = (os.cpu_count() or 1) if device == "cpu" else 1
    return max(1, min(requested, todo))


def _results(
    todo: list[PlannedObject],
    cfg: RenderConfig,
    root: Path,
    backend: str,
    device: str,
    workers: int,
    work: Callable[[PlannedObject], ObjectResult] | None = None,
) -> Iterator[ObjectResult]:
    """Render ``todo`` in this process (one worker) or in a pool of spawned processes, yielding results.

    A worker process that dies (killed for memory, a crash in native code) breaks the pool: the
    objects it held in flight are then rendered again one at a time, each in a process of its own;
    the one that kills its process again comes back ``bad`` and the run goes on with a new pool.
    ``work`` replaces the per-object function of the pool (tests).
    """
    if workers == 1 and work is None:
        worker = _Worker(cfg, root, backend, device)
        try:
            for obj in todo:
                yield worker.render(obj)
        finally:
            worker.close()
        return
    args = (config_to_dict(cfg), str(root), backend, device)
    queue = deque(todo)
    while queue:
        suspects = yield from _pool_results(queue, args, workers, work or _work)
        for obj in suspects:
            yield _isolated_result(obj, args, work or _work)


def _pool_results(
    queue: deque[PlannedObject],
    args: tuple[Any, ...],
    workers: int,
    work: Callable[[PlannedObject], ObjectResult],
) -> Generator[ObjectResult, None, list[PlannedObject]]:
    """Yield results of a pool working through ``queue``; returns the objects in flight if it broke."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=args) as pool:
        pending: dict[Future[ObjectResult], PlannedObject] = {}
        try:
            while queue and len(pending) < 4 * workers:  # keep a bounded number of tasks in flight
                obj = queue.popleft()
                pending[pool.submit(work, obj)] = obj
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        suspects = []
                        for other, obj in pending.items():  # keep what finished before the pool broke
                            if other.done() and not other.cancelled() and other.exception() is None:
                                yield other.result()
                            else:
                                suspects.append(obj)
                        _log.warning(
                            "a render process died; rendering the %d objects in flight one at a time",
                            len(suspects),
                        )
                        return suspects
                    del pending[future]
                    yield result
                    if queue:
                        obj = queue.popleft()
                        pending[pool.submit(work, obj)] = obj
        except BaseException:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return []


def _isolated_result(
    obj: PlannedObject, args: tuple[Any, ...], work: Callable[[PlannedObject], ObjectResult]
) -> ObjectResult:
    """Render one object in a process of its own; ``bad`` (naming the file) when that process dies."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=_init_worker, initargs=args) as pool:
        try:
            return pool.submit(work, obj).result()
        except BrokenProcessPool:
            reason = (
                f"{obj.ref.locator}: the render process died while rendering it"
                " (killed, e.g. for using too much memory, or crashed)"
            )
            return ObjectResult(obj.key, "bad", file=obj.ref.locator, reason=reason)


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="img",
        disable=None if enabled else True,
        smoothing=0.05,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def _manifest(
    cfg: RenderConfig,
    plan: RenderPlan,
    identity: str,
    source: ObjectSource,
    backend: dict[str, str],
    status: str,
    final: dict[str, Any] | None = None,
) -> dict[str, Any]:
    size = latent_size(cfg.variant)
    data: dict[str, Any] = {
        "format": "3DIEBench layout (SYNSET/OBJ/image_{v}.jpg, latent_{v}.npy)",
        "generator": "sie.render",
        "generator_version": f"sie {__version__}, render format {FORMAT_VERSION}",
        "status": status,
        "identity": identity,
        "config": content_config(cfg),
        "seeds": {
            "seed": cfg.seed,
            "latents": "numpy default_rng(sie.seeding.derive_seed(seed, 'latents', SYNSET, OBJ))",
            "split": "numpy default_rng(sie.seeding.derive_seed(seed, 'split', SYNSET)).permutation",
            "procedural_shapes": "numpy default_rng(sie.seeding.derive_seed('procedural', SYNSET, instance, seed))",
        },
        "source": source.describe(),
        "backend": backend,
        "latent_names": list(FACTORS[:size]),
        "latent_size": size,
        "views_per_object": cfg.views,
        "image_size": cfg.size,
        "planned_objects": len(plan.objects),
    }
    if cfg.orbit_factor:
        data["orbit"] = {"factor": cfg.orbit_factor, "steps": cfg.views, "split": "orbit"}
    if final is not None:
        data.update(final)
    return data


def _finalise(
    root: Path,
    cfg: RenderConfig,
    plan: RenderPlan,
    identity: str,
    source: ObjectSource,
    backend: dict[str, str],
) -> bool:
    """Write split files, the complete manifest and the preview once every planned object is settled."""
    skipped = read_notes(root, "skipped")
    missing = [o.key for o in plan.objects if o.key not in skipped and not object_done(root, o.key)]
    if missing:
        _log.info(
            "%d planned objects are not rendered yet (e.g. %s): other shards, or run again",
            len(missing),
            missing[0],
        )
        return False
    after = split_after_skipping(plan, set(skipped), seed=cfg.seed, val_fraction=cfg.val_fraction)
    kept, counts, dropped = after.kept, after.counts, after.dropped
    for entry in dropped:
        _log.warning("class %s dropped: %s", entry["class"], entry["reason"])
    if not kept:
        reasons = ", ".join(f"{d['class']}: {d['reason'].split(';')[0]}" for d in dropped[:5])
        raise UsageError(
            f"{root}: after --skip-bad left out {len(skipped)} objects, no class keeps the objects a split "
            f"needs ({reasons}{', ...' if len(dropped) > 5 else ''}); no split files written"
        )
    write_split_files(root, after)
    non_watertight = read_notes(root, "non_watertight")
    splits = plan.splits
    n_objects = sum(sum(c.values()) for c in counts.values())
    classes = [
        {"synset": c, "name": plan.class_names[c], "label": i, **{s: counts[c][s] for s in splits}}
        for i, c in enumerate(kept)
    ]
    final = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "classes": classes,
        "counts": {
            "classes": len(kept),
            "objects": n_objects,
            **{f"{s}_objects": sum(counts[c][s] for c in kept) for s in splits},
            "images": n_objects * cfg.views,
        },
        "skipped_objects": sorted(skipped.values(), key=lambda e: e["object"]),
        "skipped_classes": plan.skipped_classes + dropped,
        "non_watertight_objects": len(non_watertight),
    }
    first = {}
    for obj in plan.objects:
        if obj.ref.class_id in kept and obj.key not in skipped:
            first.setdefault(obj.ref.class_id, obj.key)
    dataset_contact_sheet(
        root,
        [(first[c], plan.class_names[c]) for c in kept],
        root / "preview.png",
        tile=min(128, max(64, cfg.size)),
    )
    write_json_atomic(
        root / MANIFEST_NAME, _manifest(cfg, plan, identity, source, backend, "complete", final)
    )
    remove_work_dirs(root)
    _log.info(
        "dataset complete: %d classes, %d objects, %d images%s%s -> %s",
        len(kept),
        n_objects,
        n_objects * cfg.views,
        f", {len(skipped)} objects skipped" if skipped else "",
        f", {len(dropped)} classes dropped ({', '.join(d['class'] for d in dropped)})" if dropped else "",
        root,
    )
    return True


def render_dataset(
    cfg: RenderConfig,
    out: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    workers: int | None = None,
    progress: bool = True,
) -> RenderSummary:
    """Render (or resume) the dataset described by ``cfg`` into ``out``, in the 3DIEBench layout.

    Args:
        cfg: the ``render`` config section (e.g. ``resolve_render_config(...).render``).
        out: the dataset root.
        shard: ``(i, n)``: render only the objects whose plan index is i modulo n.
        workers: processes (overrides ``cfg.workers``; 0 = all cores on CPU, 1 on a GPU).
        progress: show a progress bar (images/s, ETA) on a terminal; logs a line every 30 s otherwise.

    Raises:
        UsageError: bad config, bad source, an output directory holding another dataset, or (without
            ``skip_bad``) an object that cannot be rendered, naming its file.
    """
    started = time.perf_counter()
    check_render_config(cfg)
    index, count = shard
    if not (count >= 1 and 0 <= index < count):
        raise UsageError(f"--shard {index}/{count}: expected I/N with 0 <= I < N")
    root = Path(out)
    source = open_source(cfg.source, seed=cfg.seed, up_axis=cfg.mesh_up_axis)
    plan = build_plan(source, cfg)
    identity = dataset_identity(cfg, plan)
    device = _resolve_device(cfg.device)
    backend_name = resolve_backend_name(cfg.backend, device)
    try:
        check_output_dir(root, cfg, identity, also_accept=dataset_identity(cfg, plan, as_spelled=True))
        root.mkdir(parents=True, exist_ok=True)
        manifest = read_manifest(root)
        if manifest is None or manifest.get("status") != "complete":
            write_json_atomic(
                root / MANIFEST_NAME,
                _manifest(cfg, plan, identity, source, _backend(backend_name, device), "in progress"),
            )
    except OSError as exc:
        raise UsageError(f"{root}: cannot write the dataset there ({_os_reason(exc, root)})") from None
    try:
        return _render_planned(
            cfg,
            root,
            plan,
            identity,
            source,
            manifest,
            (shard, workers),
            (device, backend_name),
            started,
            progress,
        )
    except OSError as exc:
        raise WorkFailed(
            f"{root}: writing the dataset failed ({_os_reason(exc)}); fix that (disk space, permissions) "
            "and run the same command again to resume"
        ) from None


def _backend(name: str, device: str) -> dict[str, str]:
    return {"name": name, "device": device}


def _os_reason(exc: OSError, root: Path | None = None) -> str:
    """``path: reason`` of a failed file operation, in words (the path left out when it is ``root``)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if not exc.filename or (root is not None and Path(exc.filename) == root):
        return reason
    return f"{exc.filename}: {reason}"


def _render_planned(
    cfg: RenderConfig,
    root: Path,
    plan: RenderPlan,
    identity: str,
    source: ObjectSource,
    manifest: dict[str, Any] | None,
    sharding: tuple[tuple[int, int], int | None],
    where: tuple[str, str],
    started: float,
    progress: bool,
) -> RenderSummary:
    """The rendering part of :func:`render_dataset`, once the output directory is known to be writable.

    ``sharding`` is (shard, workers) and ``where`` (device, backend name) as resolved there.
    """
    (index, count), workers = sharding
    device, backend_name = where
    mine = [o for o in plan.objects if o.index % count == index]
    skipped_before = read_notes(root, "skipped")
    todo = [o for o in mine if o.key not in skipped_before and not object_done(root, o.key)]
    n_workers = _worker_count(cfg.workers if workers is None else workers, device, len(todo))
    if todo and n_workers > 1:
        create_renderer(backend_name, render_settings(cfg), scene_spec(cfg), device).warm_up()
    backend = _backend(backend_name, device)
    if manifest is not None and manifest.get("status") == "complete" and not todo:
        _log.info("%s is complete (%s); nothing to do", root, manifest.get("counts", {}))
        return RenderSummary(
            root, 0, 0, len(mine), 0, time.perf_counter() - started, True, 0, manifest.get("backend", backend)
        )
    _log.info(
        "rendering %d of %d objects (%d images, %d px, shard %d/%d) with %s on %s, %d worker(s)",
        len(todo),
        len(plan.objects),
        len(todo) * cfg.views,
        cfg.size,
        index,
        count,
        backend_name,
        device,
        n_workers,
    )
    rendered = skipped = images = 0
    bar = _progress(len(todo) * cfg.views, progress)
    last_log = time.perf_counter()
    try:
        for result in _results(todo, cfg, root, backend_name, device, n_workers):
            if result.status == "bad":
                if not cfg.skip_bad:
                    raise UsageError(f"{result.reason} (use --skip-bad to skip such objects)")
                write_note(root, "skipped", result.key, {"file": result.file, "reason": result.reason})
                skipped += 1
                _log.warning("skipped %s: %s", result.key, result.reason)
            elif result.status == "rendered":
                rendered += 1
                images += result.images
                if result.watertight is False:
                    write_note(root, "non_watertight", result.key, {"file": result.file})
            bar.update(cfg.views)
            now = time.perf_counter()
            if bar.disable and now - last_log > _LOG_EVERY_S:
                last_log = now
                rate = images / max(now - started, 1e-9)
                left = (len(todo) - rendered - skipped) * cfg.views / max(rate, 1e-9)
                _log.info(
                    "%d/%d objects, %.1f images/s, about %s left",
                    rendered + skipped,
                    len(todo),
                    rate,
                    format_duration(left),
                )
    finally:
        bar.close()
    complete = _finalise(root, cfg, plan, identity, source, backend)
    elapsed = time.perf_counter() - started
    _log.info(
        "rendered %d objects (%d images) in %.1f s: %.1f images/s",
        rendered,
        images,
        elapsed,
        images / max(elapsed, 1e-9),
    )
    return RenderSummary(
        root, rendered, skipped, len(mine) - len(todo), images, elapsed, complete, n_workers, backend
    )
