"""``sie demo``: the whole pipeline, small, on CPU -- render, pack, train, evaluate, report.

Every number it prints is computed in this run from data it rendered itself (nothing is cached
between machines or fixed in code). Re-running with the same ``--out`` reuses the rendered data
and packed store, resumes an interrupted training run, and re-evaluates.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sie.config import CPU_SMALL, Config, validate
from sie.errors import UsageError
from sie.log import get_logger

__all__ = ["DEMO_SIZES", "DemoResult", "DemoSize", "run_demo"]

log = get_logger(__name__)


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: the rendered benchmark and the training budget."""

    classes: int
    objects_per_class: int
    views: int
    image_size: int
    epochs: int
    batch_size: int
    probe_epochs: int
    disk_mb: int  # measured upper bound of the whole output folder, with margin
    memory_mb: int  # measured peak resident memory of the training stage, with margin


DEMO_SIZES: dict[str, DemoSize] = {
    # A check that everything runs (a couple of minutes); it learns little.
    "tiny": DemoSize(5, 12, 8, 64, epochs=4, batch_size=16, probe_epochs=10, disk_mb=400, memory_mb=2500),
    # The default: 500 optimizer steps of 64 pairs, about 10 minutes on a 2-core CPU (benchmarks/README.md).
    "small": DemoSize(
        10, 48, 10, 64, epochs=100, batch_size=64, probe_epochs=40, disk_mb=800, memory_mb=3500
    ),
}


@dataclass(frozen=True)
class DemoResult:
    data_dir: Path
    run_dir: Path
    results: Path
    report_md: Path
    report_html: Path
    headline: list[tuple[str, float, float]]  # (label, value, chance)
    wall_time_s: float


def _available_memory_mb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _preflight(out: Path, size: DemoSize, size_name: str) -> None:
    """Refuse before any work when the disk or memory cannot hold this size, and say what would fit."""
    probe = out
    while not probe.exists():
        probe = probe.parent
    free_mb = shutil.disk_usage(probe).free / 2**20
    smaller = "; try --size tiny" if size_name != "tiny" else ""
    if free_mb < size.disk_mb:
        raise UsageError(
            f"--out {out}: {free_mb:.0f} MB free on its disk, the {size_name} demo needs about "
            f"{size.disk_mb} MB{smaller} or choose another --out"
        )
    memory_mb = _available_memory_mb()
    if memory_mb is not None and memory_mb < size.memory_mb:
        raise UsageError(
            f"--size {size_name}: {memory_mb:.0f} MB of memory available, training needs about "
            f"{size.memory_mb} MB{smaller}"
        )


def demo_config(size: DemoSize, *, method: str, device: str, seed: int, data_root: Path) -> Config:
    """The demo's training configuration: the cpu-small preset scaled to ``size``."""
    cfg = replace(
        CPU_SMALL,
        data=replace(CPU_SMALL.data, root=str(data_root), resolution=size.image_size),
        model=replace(CPU_SMALL.model, method=method),
        train=replace(
            CPU_SMALL.train,
            epochs=size.epochs,
            batch_size=size.batch_size,
            device=device,
            precision="bf16" if device == "cpu" else CPU_SMALL.train.precision,
            seed=seed,
        ),
        eval=replace(CPU_SMALL.eval, probe_epochs=size.probe_epochs),
        render=replace(
            CPU_SMALL.render,
            classes=size.classes,
            objects_per_class=size.objects_per_class,
            views=size.views,
            size=size.image_size,
            seed=seed,
        ),
    )
    return validate(cfg, "sie demo")


def _stage(index: int, total: int, text: str) -> float:
    log.info("[%d/%d] %s", index, total, text)
    return time.perf_counter()


def _headline(results_path: Path) -> list[tuple[str, float, float]]:
    results = json.loads(results_path.read_text())
    wanted = [
        ("rotation", "r2", "equi", "rotation R² (equivariant part)"),
        ("rotation", "r2", "inv", "rotation R² (invariant part)"),
        ("classification", "top1", "inv", "top-1 (invariant part)"),
        ("retrieval", "MRR", "embedding", "predictor MRR (val, val)"),
        ("retrieval", "PRE", "embedding", "predictor PRE (val, all; lower is better)"),
    ]
    rows: list[tuple[str, float, float]] = []
    for task, metric, part, label in wanted:
        for s in results["summary"]:
            split_ok = s["split"] in ("val", "val-val") if metric != "PRE" else s["split"] == "val-all"
            if s["task"] == task and s["metric"] == metric and s["part"] == part and split_ok:
                rows.append((label, float(s["mean"]), float(s["chance"])))
                break
    return rows


def run_demo(
    out: str | Path = "demo",
    *,
    method: str = "sie",
    size: str = "small",
    device: str = "cpu",
    seed: int = 0,
    epochs: int | None = None,
) -> DemoResult:
    """Render a procedural benchmark, train ``method`` on it, evaluate it and write a report under ``out``."""
    if size not in DEMO_SIZES:
        raise UsageError(f"--size {size!r}: expected one of {', '.join(DEMO_SIZES)}")
    spec = DEMO_SIZES[size]
    if epochs is not None:
        spec = replace(spec, epochs=epochs)
    out = Path(out).resolve()
    _preflight(out, spec, size)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data_dir, packed_dir = out / "data", out / "packed"
    run_dir, report_dir = out / "runs" / method, out / "report"
    cfg = demo_config(spec, method=method, device=device, seed=seed, data_root=packed_dir)

    t = _stage(1, 5, f"render a procedural benchmark into {data_dir}")
    _render(cfg, data_dir)
    log.info("render done in %.0f s", time.perf_counter() - t)

    t = _stage(2, 5, f"pack it at {spec.image_size} px into {packed_dir}")
    from sie.data.pack import pack_dataset

    pack_dataset(data_dir, packed_dir, resolution=spec.image_size, workers=os.cpu_count() or 1)
    log.info("pack done in %.0f s", time.perf_counter() - t)

    t = _stage(3, 5, f"train {method} on CPU for {spec.epochs} epochs into {run_dir}")
    from sie.train import train

    resume = (run_dir / "checkpoint.pt").is_file()
    if resume:
        log.info("found %s: resuming it", run_dir / "checkpoint.pt")
    train(cfg, run_dir, resume=resume)
    log.info("train done in %.0f s", time.perf_counter() - t)

    t = _stage(4, 5, "evaluate: features once, probes, predictor retrieval")
    from sie.eval import evaluate

    results = evaluate(run_dir, packed_dir, cfg, preset_name=f"demo-{size}")
    log.info("eval done in %.0f s", time.perf_counter() - t)

    t = _stage(5, 5, f"report into {report_dir}")
    from sie.eval.report import write_report

    report_md, report_html = write_report([run_dir], report_dir)
    log.info("report done in %.0f s", time.perf_counter() - t)
    return DemoResult(
        data_dir=data_dir,
        run_dir=run_dir,
        results=results,
        report_md=report_md,
        report_html=report_html,
        headline=_headline(results),
        wall_time_s=time.perf_counter() - started,
    )


def _render(cfg: Config, data_dir: Path) -> Any:
    from sie.render.generator import render_dataset

    return render_dataset(cfg.render, data_dir)
