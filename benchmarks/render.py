"""Throughput of ``sie render`` (not a test): images/s end to end, all cores, JPEG + latent files written.

Measures, at each image size, two object sources through the real generator (``render_dataset``:
worker processes, mesh generation or loading, BVH build, rendering, JPEG encoding, latent files,
atomic object writes, split files, manifest):

* ``procedural``: the built-in templates, the largest classes of the catalogue;
* ``mesh50k``: a folder of ~50,000-triangle meshes (bumpy, stretched spheres made with numpy and
  written as PLY with trimesh), loaded from disk for every object.

Each (source, size) runs two jobs, one a quarter of the other: the larger job's images/s is the
end-to-end rate of a job that size; the extra images over the extra seconds is the *long-job rate*
(start-up cancels: process spawn, imports, kernel load, plan, manifest, preview), the one that
projects the hours for 3DIEBench's 2,623,600 images. Then one process renders a few objects with
each backend, timing every step (load, prepare + BVH, render, write). Also times the cold start of
the Warp kernels (compilation into an empty kernel cache, what a fresh CI machine pays once) and
the warm start. Prints the CPU time the render processes got (cores used): the machine may be
shared.

Example (the numbers in benchmarks/README.md)::

    .venv/bin/python benchmarks/render.py --sizes 64 128 256 --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from sie.config import RenderConfig
from sie.log import setup_logging
from sie.render.generator import render_dataset

IMAGES_3DIEBENCH = 2_623_600


def bumpy_mesh(seed: int, rings: int = 158, segments: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric bumpy stretched sphere with ~2 * rings * segments (~50k) triangles."""
    rng = np.random.default_rng(seed)
    theta = np.linspace(0.0, np.pi, rings + 1)
    phi = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    tt, pp = np.meshgrid(theta, phi, indexing="ij")
    dirs = np.stack([np.sin(tt) * np.cos(pp), np.sin(tt) * np.sin(pp), np.cos(tt)], axis=-1)
    k = rng.normal(size=(6, 3)) * 3.0
    bumps = sum(0.06 * np.sin(dirs @ k[i] + i) for i in range(6))
    vertices = (dirs * (1.0 + bumps)[..., None] * np.array([1.0, 0.6, 0.4])).reshape(-1, 3)
    faces = []
    for r in range(rings):
        for c in range(segments):
            a, b = r * segments + c, r * segments + (c + 1) % segments
            faces += [[a, b, b + segments], [a, b + segments, a + segments]]
    return vertices, np.asarray(faces)


def write_mesh_folder(root: Path, classes: int, per_class: int) -> Path:
    import trimesh

    for c in range(classes):
        folder = root / f"bumpy{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            v, f = bumpy_mesh(c * 1000 + i)
            trimesh.Trimesh(v, f, process=False).export(folder / f"m{i}.ply")
    return root


def time_cold_start() -> dict[str, float]:
    """Seconds to the first rendered image with an empty Warp kernel cache, then with the cache warm."""
    code = (
        "import time, sys; t = time.perf_counter();"
        "import warp as wp; wp.config.kernel_cache_dir = sys.argv[1];"
        "import numpy as np;"
        "from sie.render.backends import create_renderer, RenderSettings;"
        "from sie.render.procedural import procedural_mesh;"
        "from sie.render.scene import views_from_latents;"
        "r = create_renderer('warp', RenderSettings(size=32), device='cpu'); r.set_mesh(procedural_mesh('03001627', 0));"
        "r.render(views_from_latents(np.zeros((1, 7)))); print(time.perf_counter() - t)"
    )
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for name in ("cold_s", "warm_s"):
            result = subprocess.run(
                [sys.executable, "-c", code, cache], capture_output=True, text=True, check=True
            )
            out[name] = float(result.stdout.strip().splitlines()[-1])
    return out


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(cfg: RenderConfig, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        summary = render_dataset(cfg, Path(tmp) / "ds", workers=workers, progress=False)
        wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    return {
        "images": summary.images,
        "wall_s": wall,
        "images_per_s": summary.images / wall,
        "cores_used": cpu / wall,
    }


def marginal(small: dict[str, float], large: dict[str, float]) -> float:
    """Images/s of the extra images of the larger job: start-up (process spawn, imports, kernel
    load, plan, manifest, preview) cancels, leaving the rate a long job runs at."""
    extra_s = large["wall_s"] - small["wall_s"]
    if large["images"] <= small["images"] or extra_s <= 0:
        return float("nan")
    return (large["images"] - small["images"]) / extra_s


def steady_state(cfg: RenderConfig, objects: int, backend: str, device: str = "cpu") -> dict[str, float]:
    """One process once started (no imports, no process start-up): images/s and milliseconds per
    image in each step (load or generate the mesh, prepare it and build the BVH, render every view,
    write JPEGs and latents). Processes do not share work, so N free cores give about N times this."""
    from sie.render.backends import create_renderer
    from sie.render.generator import object_latents
    from sie.render.plan import build_plan
    from sie.render.scene import SceneSpec, views_from_latents
    from sie.render.settings import render_settings
    from sie.render.sources import open_source
    from sie.render.writer import write_object

    source = open_source(cfg.source, seed=cfg.seed)
    plan = build_plan(source, cfg).objects[:objects]
    renderer = create_renderer(backend, render_settings(cfg), SceneSpec(), device)
    renderer.warm_up()
    steps = dict.fromkeys(("load", "prepare", "render", "write"), 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for obj in plan:
            t0 = time.perf_counter()
            mesh = source.load(obj.ref)
            t1 = time.perf_counter()
            renderer.set_mesh(mesh)
            t2 = time.perf_counter()
            latents = object_latents(cfg, obj.ref.class_id, obj.ref.object_id)
            images = renderer.render(views_from_latents(latents)).images
            t3 = time.perf_counter()
            write_object(Path(tmp), obj.key, images, latents)
            t4 = time.perf_counter()
            for key, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                steps[key] += dt
        images_done = len(plan) * cfg.views
        rate = images_done / (time.perf_counter() - start)
    return {"images_per_s": rate, **{f"{k}_ms": 1e3 * v / images_done for k, v in steps.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--spp", type=int, default=4, help="rays per anti-aliased pixel")
    parser.add_argument("--antialias", default="adaptive", choices=("adaptive", "full"))
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="rough target duration of the larger end-to-end job"
    )
    parser.add_argument(
        "--backends", nargs="+", default=["warp", "embree"], help="backends timed in one process"
    )
    parser.add_argument(
        "--sources", nargs="+", default=["procedural", "mesh50k"], choices=("procedural", "mesh50k")
    )
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the Warp kernels on a GPU")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    setup_logging("WARNING")
    results: dict[str, object] = {
        "machine": f"{os.cpu_count()} cores",
        "workers": args.workers,
        "spp": args.spp,
        "antialias": args.antialias,
    }
    results["warp_start"] = time_cold_start()
    print(
        f"warp start: cold {results['warp_start']['cold_s']:.1f} s, warm {results['warp_start']['warm_s']:.1f} s"
    )
    base = RenderConfig(
        views=args.views, samples_per_pixel=args.spp, antialias=args.antialias, device=args.device
    )
    guess = {64: 400.0, 128: 150.0, 256: 50.0}  # images/s, only to size each run
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        objects_max = max(8, math.ceil(guess.get(min(args.sizes), 50.0) * args.seconds / args.views))
        meshes = None
        if "mesh50k" in args.sources:
            meshes = write_mesh_folder(Path(tmp) / "meshes", classes=2, per_class=math.ceil(objects_max / 2))
        for size in args.sizes:
            objects = max(8, math.ceil(guess.get(size, 50.0) * args.seconds / args.views))
            for name in args.sources:
                if name == "procedural":
                    classes = min(11, objects)
                    cfg = replace(
                        base,
                        size=size,
                        classes=classes,
                        objects_per_class=max(4, math.ceil(objects / classes)),
                    )
                else:
                    cfg = replace(
                        base,
                        size=size,
                        classes=2,
                        objects_per_class=max(4, math.ceil(objects / 2)),
                        source=f"folder:{meshes}",
                    )
                # A job a quarter the size, same settings: the difference is the long-job rate.
                small = run(replace(cfg, objects_per_class=max(2, cfg.objects_per_class // 4)), args.workers)
                large = run(cfg, args.workers)
                long_rate = marginal(small, large)
                row: dict[str, object] = {
                    "source": name,
                    "size": size,
                    **large,
                    "marginal_images_per_s": long_rate,
                    "hours_2.6M": IMAGES_3DIEBENCH / long_rate / 3600,
                    "small_job": small,
                }
                for backend in args.backends:
                    row[f"one_process_{backend}"] = steady_state(
                        cfg, min(8, cfg.classes * cfg.objects_per_class), backend, args.device
                    )
                rows.append(row)
                one = ", ".join(
                    f"{b} {row[f'one_process_{b}']['images_per_s']:.1f}"  # type: ignore[index]
                    for b in args.backends
                )
                print(
                    f"{name:10s} {size:4d} px: {large['images_per_s']:7.1f} images/s end to end ({large['images']} images"
                    f" in {large['wall_s']:.1f} s, {large['cores_used']:.2f} cores); long-job rate"
                    f" {long_rate:.1f} images/s -> 2.6M images in {row['hours_2.6M']:.1f} h; one process: {one} images/s"
                )
                steps = row[f"one_process_{args.backends[0]}"]
                print(
                    "    ms per image in one process ("
                    + args.backends[0]
                    + "): "
                    + ", ".join(
                        f"{k[:-3]} {v:.2f}"
                        for k, v in steps.items()
                        if k.endswith("_ms")  # type: ignore[union-attr]
                    )
                )
    results["rows"] = rows
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
