"""Reproduction study on the built-in procedural benchmark: every method at an equal budget, then the
full evaluation protocol, then one comparison report.

Usage (repository root; the data comes from `sie demo`'s render + pack, or any packed store):

    .venv/bin/python benchmarks/study.py --out study --size small --epochs 60 --seeds 0

Each (method, seed) trains from the same config (the demo's cpu-small-derived config) except for the
method and its variant keys, is evaluated with the same probe schedule, and is recorded with its wall
times in OUT/study.json; OUT/report holds report.md/report.html with the comparison table. Re-running
skips finished runs (their checkpoints and results are reused) and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from sie.config import apply_overrides
from sie.data.pack import pack_dataset
from sie.demo import DEMO_SIZES, demo_config
from sie.eval import evaluate
from sie.eval.report import write_report
from sie.log import setup_logging
from sie.render.generator import render_dataset
from sie.train import train

# (label, registered method, config overrides): the rows of the paper's main table that exist here.
ENTRIES: list[tuple[str, str, list[str]]] = [
    ("SIE", "sie", []),
    ("SIE (no predictor variance)", "sie-novar", []),
    ("SIE (MLP predictor)", "sie", ["model.predictor_type=mlp"]),
    ("VICReg", "vicreg", []),
    ("SimCLR", "simclr", []),
    ("SimCLR + AugSelf", "augself", []),
    ("EquiMod (SimCLR)", "equimod", []),
    ("EquiMod (VICReg)", "equimod-vicreg", []),
    ("Supervised", "supervised", []),
]


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-").replace("--", "-")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("study"))
    parser.add_argument("--size", default="small", choices=sorted(DEMO_SIZES))
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the size's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="*", default=None, help="labels (slugs) to run, default all")
    args = parser.parse_args()
    setup_logging()
    spec = DEMO_SIZES[args.size]
    if args.epochs is not None:
        spec = dataclasses.replace(spec, epochs=args.epochs)
    out = args.out.resolve()
    data_dir, packed_dir = out / "data", out / "packed"
    base = demo_config(spec, method="sie", device="cpu", seed=0, data_root=packed_dir)
    started = time.perf_counter()
    render_dataset(base.render, data_dir)
    pack_dataset(data_dir, packed_dir, resolution=spec.image_size)
    record_path = out / "study.json"
    records = json.loads(record_path.read_text()) if record_path.is_file() else {}
    run_dirs = []
    for label, method, overrides in ENTRIES:
        if args.only and slug(label) not in args.only:
            continue
        for seed in args.seeds:
            key = f"{slug(label)}-s{seed}"
            run_dir = out / "runs" / key
            run_dirs.append(run_dir)
            if key in records and (run_dir / "eval" / "results.json").is_file():
                continue
            cfg = demo_config(spec, method=method, device="cpu", seed=seed, data_root=packed_dir)
            cfg = apply_overrides(cfg, overrides) if overrides else cfg
            t0 = time.perf_counter()
            train(cfg, run_dir, resume=(run_dir / "checkpoint.pt").is_file())
            t1 = time.perf_counter()
            results = evaluate(run_dir, packed_dir, cfg, preset_name=f"study-{args.size}")
            t2 = time.perf_counter()
            manifest = json.loads(results.read_text())["dataset"]
            records[key] = {
                "label": label,
                "method": method,
                "overrides": overrides,
                "seed": seed,
                "train_s": round(t1 - t0, 1),
                "eval_s": round(t2 - t1, 1),
                "dataset": manifest,
            }
            record_path.write_text(json.dumps(records, indent=2))
    write_report(run_dirs, out / "report")
    meta = {
        "size": dataclasses.asdict(spec),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "total_s": round(time.perf_counter() - started, 1),
    }
    (out / "study_meta.json").write_text(json.dumps(meta, indent=2))
    print(f"study: {len(run_dirs)} runs; report in {out / 'report'}")


if __name__ == "__main__":
    main()
