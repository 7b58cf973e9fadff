"""``sie demo``: the whole pipeline, small, on CPU -- render, pack, train, evaluate, report.

It trains a method (SIE by default) and an invariant baseline (VICReg by default) for the same number of
steps on the same rendered benchmark, evaluates both with the same protocol and prints their numbers side
by side with each metric's chance level, then says in words what was learned. It uses the ``cpu`` preset
(the ``mini`` benchmark at 32 px and the ``convnet`` backbone, with the documented option
``model.hypernetwork_init_gain=1``; docs/config.md). Every number it prints is computed in this run from
data it rendered itself (nothing is cached between machines or fixed in code). Re-running with the same
``--out`` reuses the rendered data and packed store, resumes an interrupted training run, and
re-evaluates.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sie.config import CPU, Config, validate
from sie.errors import ConfigError, UsageError
from sie.log import get_logger

__all__ = ["DEMO_SIZES", "DemoResult", "DemoSize", "MethodResult", "run_demo"]

log = get_logger(__name__)


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: the rendered benchmark and the training budget (per method)."""

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
    # A check that everything runs (well under a minute per method); it learns little.
    "tiny": DemoSize(5, 12, 8, 32, epochs=4, batch_size=16, probe_epochs=10, disk_mb=300, memory_mb=1500),
    # The default: the `mini` benchmark (10 classes x 100 objects x 20 views, 32 px); 800 train objects at
    # batch 128 make 6 steps per epoch, so 150 epochs = 900 optimizer steps per method (the cpu preset's),
    # about 4.5 minutes each on a 2-core CPU; the whole demo stays under 15 minutes with the install.
    "small": DemoSize(
        10, 100, 20, 32, epochs=150, batch_size=128, probe_epochs=300, disk_mb=600, memory_mb=2500
    ),
}


@dataclass(frozen=True)
class MethodResult:
    """One trained and evaluated method of the demo."""

    method: str
    run_dir: Path
    results: Path
    headline: list[tuple[str, float, float]]  # (label, value, chance)
    train_s: float


@dataclass(frozen=True)
class DemoResult:
    data_dir: Path
    runs: list[MethodResult]
    report_md: Path
    report_html: Path
    summary: str  # what was learned, in words
    wall_time_s: float

    @property
    def run_dir(self) -> Path:
        """The main method's run directory."""
        return self.runs[0].run_dir

    @property
    def headline(self) -> list[tuple[str, float, float]]:
        """The main method's headline numbers."""
        return self.runs[0].headline


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
    """The demo's training configuration: the ``cpu`` preset scaled to ``size``."""
    cfg = replace(
        CPU,
        data=replace(CPU.data, root=str(data_root), resolution=size.image_size),
        model=replace(CPU.model, method=method),
        train=replace(
            CPU.train,
            epochs=size.epochs,
            batch_size=size.batch_size,
            device=device,
            precision="bf16" if device == "cpu" else CPU.train.precision,
            seed=seed,
        ),
        eval=replace(CPU.eval, probe_epochs=size.probe_epochs),
        render=replace(
            CPU.render,
            classes=size.classes,
            objects_per_class=size.objects_per_class,
            views=size.views,
            size=size.image_size,
            seed=seed,
        ),
    )
    return validate(cfg, "sie demo")


def check_demo_methods(methods: list[str], size: DemoSize, *, device: str, seed: int, out: Path) -> None:
    """Refuse unknown or unbuildable methods before anything is rendered (one line naming the flag)."""
    from sie.methods import build_method, list_methods

    registered = [name for name, _ in list_methods()]
    for flag, name in zip(("--method", "--baseline"), methods, strict=False):
        if name not in registered:
            import difflib

            close = difflib.get_close_matches(name, registered, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{flag} {name!r} is not a registered method{hint}; see `sie methods`")
        cfg = demo_config(size, method=name, device=device, seed=seed, data_root=out / "packed")
        try:
            build_method(cfg, transform_dim=4)  # the demo's data gives quaternions (4 parameters)
        except ConfigError as exc:
            raise UsageError(f"{flag} {name}: {exc}") from None
    if len(methods) == 2 and methods[0] == methods[1]:
        raise UsageError(f"--baseline {methods[1]!r} is the same as --method; choose another or 'none'")


def _stage(index: int, total: int, text: str) -> float:
    log.info("[%d/%d] %s", index, total, text)
    return time.perf_counter()


# (task, metric, part, split, label): what the demo prints, in this order; a method prints the rows it has.
HEADLINE_ROWS: list[tuple[str, str, str, str, str]] = [
    ("rotation", "r2", "equi", "val", "rotation R², equivariant part"),
    ("rotation", "r2", "full", "val", "rotation R², whole representation"),
    ("classification", "top1", "inv", "val", "top-1, invariant part"),
    ("classification", "top1", "full", "val", "top-1, whole representation"),
    ("retrieval", "MRR", "embedding", "val-val", "predictor MRR (val, val)"),
    ("retrieval", "PRE", "embedding", "val-all", "predictor PRE (val, all; lower is better)"),
]


def _headline(results_path: Path) -> list[tuple[str, float, float]]:
    results = json.loads(results_path.read_text())
    rows: list[tuple[str, float, float]] = []
    for task, metric, part, split, label in HEADLINE_ROWS:
        for s in results["summary"]:
            if (s["task"], s["metric"], s["part"], s["split"]) == (task, metric, part, split):
                rows.append((label, float(s["mean"]), float(s["chance"])))
                break
    return rows


def summarize(runs: list[MethodResult]) -> str:
    """What the runs learned, in plain words: the report's verdict of each run (classes, rotation and
    predictor against their chance levels with stated margins), then how the first run's rotation
    information compares with the second's."""
    from sie.eval.run_results import load_run
    from sie.eval.verdict import verdict

    sentences = [verdict(load_run(run.run_dir)) for run in runs]
    if len(runs) == 2:
        main, other = runs
        ours_rows = {label: value for label, value, _ in main.headline}
        theirs_rows = {label: value for label, value, _ in other.headline}
        ours = ours_rows.get(
            "rotation R², equivariant part", ours_rows.get("rotation R², whole representation")
        )
        theirs = theirs_rows.get("rotation R², whole representation")
        if ours is not None and theirs is not None:
            verb = "more" if ours > theirs + 0.02 else "less" if ours < theirs - 0.02 else "as much"
            part = "equivariant part" if "rotation R², equivariant part" in ours_rows else "representation"
            sentences.append(
                f"After the same number of training steps, {main.method}'s {part} holds {verb} rotation "
                f"information than {other.method}'s whole representation (R² {ours:.2f} vs {theirs:.2f})."
            )
    return "\n".join(sentences)


def run_demo(
    out: str | Path = "demo",
    *,
    method: str = "sie",
    baseline: str | None = "vicreg",
    size: str = "small",
    device: str = "cpu",
    seed: int = 0,
    epochs: int | None = None,
) -> DemoResult:
    """Render a procedural benchmark, train ``method`` and ``baseline`` on it for the same number of steps,
    evaluate both and write one report under ``out``."""
    from sie.extras import require_extra

    require_extra("matplotlib", "report", "sie demo (its report)")
    if size not in DEMO_SIZES:
        raise UsageError(f"--size {size!r}: expected one of {', '.join(DEMO_SIZES)}")
    spec = DEMO_SIZES[size]
    if epochs is not None:
        if epochs <= 0:
            raise UsageError(f"--epochs {epochs}: must be positive")
        spec = replace(spec, epochs=epochs)
    out = Path(out).resolve()
    methods = [method] if baseline in (None, "", "none") else [method, str(baseline)]
    check_demo_methods(methods, spec, device=device, seed=seed, out=out)
    _preflight(out, spec, size)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data_dir, packed_dir, report_dir = out / "data", out / "packed", out / "report"
    total = 3 + 2 * len(methods)
    base = demo_config(spec, method=method, device=device, seed=seed, data_root=packed_dir)

    t = _stage(1, total, f"render a procedural benchmark into {data_dir}")
    _render(base, data_dir)
    log.info("render done in %.0f s", time.perf_counter() - t)

    t = _stage(2, total, f"pack it at {spec.image_size} px into {packed_dir}")
    from sie.data.pack import pack_dataset

    pack_dataset(data_dir, packed_dir, resolution=spec.image_size, workers=os.cpu_count() or 1)
    log.info("pack done in %.0f s", time.perf_counter() - t)

    from sie.engine import train
    from sie.eval import evaluate

    runs: list[MethodResult] = []
    for index, name in enumerate(methods):
        cfg = demo_config(spec, method=name, device=device, seed=seed, data_root=packed_dir)
        run_dir = out / "runs" / name
        steps = f"{spec.epochs} epochs" if spec.epochs != 1 else "1 epoch"
        t = _stage(3 + 2 * index, total, f"train {name} on {device} for {steps} into {run_dir}")
        resume = (run_dir / "checkpoint.pt").is_file()
        if resume:
            log.info("found %s: resuming it", run_dir / "checkpoint.pt")
        train(cfg, run_dir, resume=resume)
        train_s = time.perf_counter() - t
        log.info("train done in %.0f s", train_s)
        t = _stage(4 + 2 * index, total, f"evaluate {name}: features once, probes, predictor retrieval")
        results = evaluate(run_dir, packed_dir, cfg, preset_name=f"demo-{size}")
        log.info("eval done in %.0f s", time.perf_counter() - t)
        runs.append(MethodResult(name, run_dir, results, _headline(results), train_s))

    t = _stage(total, total, f"report into {report_dir}")
    from sie.eval.report import write_report

    report_md, report_html = write_report([r.run_dir for r in runs], report_dir)
    log.info("report done in %.0f s", time.perf_counter() - t)
    return DemoResult(
        data_dir=data_dir,
        runs=runs,
        report_md=report_md,
        report_html=report_html,
        summary=summarize(runs),
        wall_time_s=time.perf_counter() - started,
    )


def _render(cfg: Config, data_dir: Path) -> Any:
    from sie.render.generator import render_dataset

    return render_dataset(cfg.render, data_dir)
