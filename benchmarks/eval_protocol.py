"""Wall time of the evaluation protocol, and its projection to the full 3DIEBench.

Measures, on this machine:

1. ``sie.eval.evaluate`` on a small generated dataset (``tests/helpers/tiny_dataset.write_tiny_dataset``)
   with a briefly trained SIE run: (a) the default mode (features extracted once, then cached),
   cold (extraction included) and warm (features read from the cache); (b) ``reference_bn`` mode,
   which re-runs the backbone on the images of every probe batch as the reference scripts do; both
   with the same probes and epochs.
2. The ingredients of the projection: the frozen backbone's forward throughput (images/s, eval mode,
   no grad) at 256 px for the reference ResNet-18, and the time of one probe step at batch 256
   (linear classifier on 256/512-d features, MLP 1024-1024 on 512/1024-d pairs).

and prints the arithmetic of the projection to 3DIEBench (41,920 train + 10,552 val objects x 50
views, 300 probe epochs, batch 256): backbone passes and time for our protocol (every image once)
versus the reference's (the backbone re-run on one view, or two for pairs, of every train and val
object at every probe epoch).

    python benchmarks/eval_protocol.py --epochs 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.tiny_dataset import write_tiny_dataset

from sie.config import resolve_config
from sie.engine import train
from sie.eval.presets import eval_preset
from sie.eval.probes import build_mlp_head
from sie.eval.run import evaluate
from sie.nn.backbones import build_backbone

FULL = {"train_objects": 41_920, "val_objects": 10_552, "views": 50, "epochs": 300, "batch": 256}


def backbone_throughput(resolution: int, small_stem: bool, batch: int = 32, batches: int = 3) -> float:
    """Images per second of the reference ResNet-18 forward pass (eval mode, no grad)."""
    model = build_backbone("resnet18", small_stem=small_stem).eval()
    x = torch.randn(batch, 3, resolution, resolution)
    with torch.no_grad():
        model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
    return batch * batches / (time.perf_counter() - start)


def probe_step_ms(
    in_dim: int, hidden: tuple[int, ...], out_dim: int, steps: int = 20, batch: int = 256
) -> float:
    """Milliseconds per Adam step of a probe head at batch 256 on random features."""
    head = build_mlp_head(in_dim, hidden, out_dim)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    x, y = torch.randn(batch, in_dim), torch.randn(batch, out_dim)
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        loss = torch.nn.functional.mse_loss(head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return 1000 * (time.perf_counter() - start) / steps


def timed_eval(run: Path, data: Path, **changes: object) -> tuple[float, dict]:
    cfg = dataclasses.replace(eval_preset("paper"), figures=False, **changes)
    start = time.perf_counter()
    path = evaluate(run, data, cfg)
    return time.perf_counter() - start, json.loads(path.read_text())


def say(text: str) -> None:
    print(text, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--objects-per-class", type=int, default=10)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--size", type=int, default=64, help="image side of the small dataset (px)")
    parser.add_argument("--epochs", type=int, default=5, help="probe epochs of the measured runs")
    parser.add_argument("--out", type=Path, default=None, help="working directory (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    say(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    work = args.out or Path(tempfile.mkdtemp(prefix="sie-eval-bench-"))
    data = write_tiny_dataset(work / "data", classes=args.classes, objects_per_class=args.objects_per_class,
                              views=args.views, size=args.size, val_fraction=0.2)  # fmt: skip
    cfg = resolve_config("cpu-small", overrides=[f"data.root={data}", f"data.resolution={args.size}",
                                                 "data.num_workers=0", "train.batch_size=16"])  # fmt: skip
    run = train(cfg, work / "run-sie", max_steps=2)
    full_cold_s, full = timed_eval(run, data, probe_epochs=args.epochs)
    splits = full["dataset"]["splits"]
    extraction = sum(f["extraction_s"] for f in full["features"].values())
    images = sum(s["objects"] * s["views"] for s in splits.values())
    say(f"small dataset: {splits['train']['objects']} train + {splits['val']['objects']} val objects x "
        f"{args.views} views, {args.size} px ({images} images); SIE run ({cfg.model.arch}, small stem "
        f"{cfg.model.small_stem}); probes: {args.epochs} epochs")  # fmt: skip
    say(f"  full protocol (4 probe tasks x 3 parts + retrieval), cold: {full_cold_s:.1f} s "
        f"(feature extraction {extraction:.1f} s), {len(full['records'])} records")  # fmt: skip
    full_warm_s, _ = timed_eval(run, data, probe_epochs=args.epochs)
    say(f"  full protocol, warm (features from the cache): {full_warm_s:.1f} s")
    paper_s, paper = timed_eval(run, data)
    say(f"  full protocol with the paper preset (300 probe epochs), warm: {paper_s:.1f} s, "
        f"{len(paper['records'])} records")  # fmt: skip
    tasks = ("classification", "rotation")
    warm_s, _ = timed_eval(run, data, probe_epochs=args.epochs, tasks=tasks)
    say(f"  classification + rotation on 3 parts, cached features (warm): {warm_s:.1f} s")
    ref_s, _ = timed_eval(run, data, probe_epochs=args.epochs, tasks=tasks, reference_bn=True)
    say(f"  the same in reference BN mode (backbone per probe batch): {ref_s:.1f} s "
        f"({ref_s / warm_s:.1f}x; {ref_s / (warm_s + extraction):.1f}x counting our extraction)")  # fmt: skip

    ips_small = backbone_throughput(args.size, small_stem=cfg.model.small_stem)
    ips_256 = backbone_throughput(256, small_stem=False, batch=16, batches=2)
    say(f"backbone forward (eval, no grad): {ips_256:.1f} img/s at 256 px (reference ResNet-18); "
        f"{ips_small:.1f} img/s at {args.size} px")  # fmt: skip
    lin_ms = probe_step_ms(512, (), 55)
    lin_part_ms = probe_step_ms(256, (), 55)
    mlp_ms = probe_step_ms(1024, (1024, 1024), 4)
    mlp_part_ms = probe_step_ms(512, (1024, 1024), 4)
    say(f"probe step at batch 256: linear 512-d {lin_ms:.2f} ms, 256-d {lin_part_ms:.2f} ms; "
        f"MLP 1024-1024 on 1024-d pairs {mlp_ms:.1f} ms, on 512-d pairs {mlp_part_ms:.1f} ms")  # fmt: skip

    n_tr, n_va, v, ep, b = (FULL[k] for k in ("train_objects", "val_objects", "views", "epochs", "batch"))
    steps = ep * math.ceil(n_tr / b)
    head_h = (
        steps * (lin_ms + 2 * lin_part_ms + mlp_ms + 2 * mlp_part_ms) / 1000 / 3600
    )  # 3 parts x (cls + rot)
    ours_passes = (n_tr + n_va) * v
    ref_passes = 3 * ep * (n_tr + n_va) + 3 * ep * 2 * (n_tr + n_va)  # cls: 1 view, rotation: 2 views
    say(
        "projection to 3DIEBench (3 parts x (classification + rotation), 300 epochs, batch 256), this machine:"
    )
    say(f"  ours:      ({n_tr:,} + {n_va:,}) x {v} = {ours_passes:,} backbone passes / {ips_256:.1f} img/s = "
        f"{ours_passes / ips_256 / 3600:,.1f} h, + probe heads {steps:,} steps x 6 probes = {head_h:,.1f} h")  # fmt: skip
    say(f"  reference: 3 x {ep} x {n_tr + n_va:,} + 3 x {ep} x 2 x {n_tr + n_va:,} = {ref_passes:,} passes / "
        f"{ips_256:.1f} img/s = {ref_passes / ips_256 / 3600:,.1f} h, + the same probe heads")  # fmt: skip
    say(f"  backbone passes: {ref_passes / ours_passes:.1f}x fewer with cached features")
    say(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
