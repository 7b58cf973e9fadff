"""Exploration for docs/results.md: SIE at the study's budget with the hypernetwork's initial gain set to 1.

The reference initialises the linear hypernetwork ``Linear(4, d*d)`` with PyTorch's default
(U(-1/2, 1/2) per weight, since fan_in = 4), so the generated matrix W(g) multiplies the equivariant
embedding by a random matrix of gain about sqrt(d) * 0.289 (6.5 for d = 512). This script sets
``model.hypernetwork_init_gain=1`` (the generator's initial weights scaled by 1 / (sqrt(d) * 0.289),
the same random draw) and otherwise trains and evaluates exactly like ``benchmarks/study.py`` (same
config, data and seed). (docs/results.md's numbers came from an earlier form of this script that
applied the same scaling by wrapping the predictor's constructor; the weights are identical.)

Usage (repository root, after the study has rendered and packed its data into STUDY/packed):

    .venv/bin/python benchmarks/ablate_hypernetwork_gain.py --study study --seed 0
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from dataclasses import replace
from pathlib import Path

from sie.demo import demo_config
from sie.eval import evaluate
from sie.log import setup_logging
from sie.train import train


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", type=Path, default=Path("study"), help="the study's --out folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup_logging()
    spec = importlib.util.spec_from_file_location("study", Path(__file__).with_name("study.py"))
    assert spec is not None and spec.loader is not None
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    packed = args.study.resolve() / "packed"
    cfg = demo_config(study.SIZES["study"], method="sie", device="cpu", seed=args.seed, data_root=packed)
    cfg = replace(cfg, model=replace(cfg.model, hypernetwork_init_gain=1.0))
    run_dir = args.study.resolve() / "ablation" / f"sie-unit-gain-s{args.seed}"
    started = time.perf_counter()
    train(cfg, run_dir, resume=(run_dir / "checkpoint.pt").is_file())
    trained = time.perf_counter()
    results = json.loads(evaluate(run_dir, packed, cfg, preset_name="study-ablation").read_text())
    print(
        json.dumps(
            {"run": str(run_dir), "train_s": round(trained - started, 1), "summary": results["summary"]}
        )
    )


if __name__ == "__main__":
    main()
