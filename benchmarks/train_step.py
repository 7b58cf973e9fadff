"""Training-step throughput of ``sie train`` at the paper's SIE configuration, on CPU.

Every setting is one real ``sie train`` run (a fresh process, so peak memory is per setting): the SIE
method as in the reference (reference ResNet-18 with its standard stem, projectors from
``mlp 2048-2048-2048`` split by ``equi 256``, linear hypernetwork), the online evaluator on, Adam, a
global batch of 64 pairs, on a dataset written by ``tests/helpers/tiny_dataset.write_tiny_dataset``
(256 px JPEGs) and packed with ``sie pack`` at each resolution. Each run does ``--warmup`` steps
(oneDNN kernel selection, worker start-up) and then ``--steps`` timed steps, all inside the first epoch
so no checkpoint is written in between; ``metrics.jsonl`` gives one record per step. Reported per
setting: the median pairs/s and the mean data-wait fraction of the timed steps, and the peak resident
memory of the process.

Settings: fp32 vs bf16 autocast + channels_last at 64 px (side by side), the same at 128 px, bf16 +
channels_last at 256 px, the raw JPEG layout instead of the packed store at 64 px, and 1 vs 2 processes
(``torchrun --nproc-per-node 2``, gloo, SyncBatchNorm; the global batch stays 64).

    python benchmarks/train_step.py                      # everything (15-30 minutes on 2 shared cores)
    python benchmarks/train_step.py --only 64            # the 64 px rows
    python benchmarks/train_step.py --json results.json  # also write the rows as JSON
    python benchmarks/train_step.py --only 64 --threads 1 2 --repeat 3   # interleaved rounds, best and median
    python benchmarks/train_step.py --only 128 --methods sie seq-jepa --repeat 3   # methods side by side

With several ``--methods`` every setting runs for each (interleaved); a method's other settings are its
defaults (seq-JEPA: sequences of 3 + 1 views, so its "pairs/s" are sequences/s; ``images_per_s`` counts
every view the backbones see).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers.tiny_dataset import write_tiny_dataset  # noqa: E402

from sie.config import resolve_config  # noqa: E402
from sie.data.pack import pack_dataset  # noqa: E402
from sie.methods import views_per_sample  # noqa: E402

PAPER_MODEL = ["model.mlp=2048-2048-2048", "model.equi=256", "model.small_stem=false", "model.arch=resnet18"]


def run_setting(
    name: str,
    data: Path,
    workdir: Path,
    *,
    resolution: int,
    precision: str,
    channels_last: bool,
    processes: int,
    warmup: int,
    steps: int,
    workers: int,
    device: str = "cpu",
    batch_size: int = 64,
    threads: int | None = None,
    method: str = "sie",
) -> dict[str, Any]:
    """One ``sie train`` run; returns the row (median pairs/s, data wait, peak memory, wall time)."""
    out = workdir / name
    shutil.rmtree(out, ignore_errors=True)
    sets = [
        *PAPER_MODEL,
        "train.online_eval=true",
        "train.log_every_s=0",
        f"train.channels_last={'true' if channels_last else 'false'}",
        f"data.num_workers={workers}",
        "train.checkpoint_every_min=1000",
    ]
    args = [
        "train",
        "--data",
        str(data),
        "--method",
        method,
        "--out",
        str(out),
        "--preset",
        "paper",
        "--epochs",
        "1",
        "--batch-size",
        str(batch_size),
        "--resolution",
        str(resolution),
        "--device",
        device,
        "--precision",
        precision,
        "--max-steps",
        str(warmup + steps),
    ]
    for item in sets:
        args += ["--set", item]
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    if processes == 1:
        command = [sys.executable, "-m", "sie", *args]
    else:
        # Split the cores between the processes rather than oversubscribing them.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            "-m",
            "sie",
            *args,
        ]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{name}: sie train failed ({result.returncode}):\n{result.stderr[-4000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in records if r["step"] > warmup]
    if len(timed) != steps:
        raise SystemExit(f"{name}: expected {steps} timed records, got {len(timed)} (is an epoch too short?)")
    views = views_per_sample(resolve_config("paper", overrides=[f"model.method={method}"]))
    samples_per_s = statistics.median(r["pairs_per_s"] for r in timed)
    row = {
        "setting": name,
        "method": method,
        "views_per_sample": views,
        "resolution": resolution,
        "precision": precision,
        "channels_last": channels_last,
        "processes": processes,
        "threads_per_process": int(env.get("OMP_NUM_THREADS", torch.get_num_threads())),
        "store": "packed" if (data / "manifest.json").exists() else "raw",
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu x{os.cpu_count()}",
        "batch_size": batch_size,
        "pairs_per_s": samples_per_s,
        "images_per_s": samples_per_s * views,
        "data_wait_frac": statistics.fmean(r["data_wait_frac"] for r in timed),
        "step_time_s": statistics.median(r["step_time_s"] for r in timed),
        "peak_mem_mb": max(r["peak_mem_mb"] for r in records),
        "loss_finite": all(r["loss"] is not None for r in records),
        "wall_s": wall,
        "load_avg_1min_before": load_before,
    }
    print(
        f"{name:28s} x{row['threads_per_process']} thr {row['pairs_per_s']:7.1f} samples/s "
        f"({row['images_per_s']:7.1f} images/s)  step {row['step_time_s']:6.2f} s  "
        f"data wait {100 * row['data_wait_frac']:4.1f}%  peak {row['peak_mem_mb']:7.0f} MiB  "
        f"(load {load_before:.1f})",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects-per-class", type=int, default=100, help="4 classes; 90%% go to train")
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="data.num_workers")
    parser.add_argument("--only", choices=["64", "128", "256", "raw", "ddp", "gpu"], nargs="*", default=None)
    parser.add_argument(
        "--root", type=Path, default=None, help="existing 256 px dataset (default: generated)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="*",
        default=None,
        help="torch threads per process (OMP_NUM_THREADS); several values run every 1-process setting with each",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds; each round runs every setting once (interleaved, so load spikes hit all alike)",
    )
    parser.add_argument(
        "--methods", nargs="+", default=["sie"], help="methods to time, each at every setting"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if args.only and "gpu" in args.only:
        if not torch.cuda.is_available():
            raise SystemExit("--only gpu needs a CUDA device")
        print(f"# GPU: {torch.cuda.get_device_name(0)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sie-train-bench-") as tmp:
        work = Path(tmp)
        root = args.root
        if root is None:
            root = write_tiny_dataset(
                work / "raw",
                classes=4,
                objects_per_class=args.objects_per_class,
                views=args.views,
                size=256,
                val_fraction=0.1,
            )
        wanted = set(args.only or ["64", "128", "256", "raw", "ddp"])  # "gpu" only when asked
        needed = {64} if wanted & {"64", "ddp"} else set()
        needed |= {int(g) for g in wanted & {"128", "256"}}
        needed |= {128, 256} if "gpu" in wanted else set()
        packed: dict[int, Path] = {}
        for px in sorted(needed):
            packed[px] = pack_dataset(
                root, work / f"packed{px}", px, workers=os.cpu_count() or 1, progress=False
            )
        common = {"warmup": args.warmup, "steps": args.steps, "workers": args.workers}
        plan: list[tuple[str, str, dict[str, Any]]] = [
            ("64", "64px fp32", {"data": packed.get(64), "resolution": 64, "precision": "fp32", "channels_last": False}),
            ("64", "64px bf16+cl", {"data": packed.get(64), "resolution": 64, "precision": "bf16", "channels_last": True}),
            ("raw", "64px bf16+cl raw jpeg", {"data": root, "resolution": 64, "precision": "bf16", "channels_last": True}),
            ("ddp", "64px bf16+cl 2 processes", {"data": packed.get(64), "resolution": 64, "precision": "bf16", "channels_last": True, "processes": 2}),
            ("128", "128px fp32", {"data": packed.get(128), "resolution": 128, "precision": "fp32", "channels_last": False}),
            ("128", "128px bf16+cl", {"data": packed.get(128), "resolution": 128, "precision": "bf16", "channels_last": True}),
            ("256", "256px bf16+cl", {"data": packed.get(256), "resolution": 256, "precision": "bf16", "channels_last": True}),
            ("gpu", "gpu 128px fp16+cl b256", {"data": packed.get(128), "resolution": 128, "precision": "fp16", "channels_last": True, "device": "cuda", "batch_size": 256}),
            ("gpu", "gpu 128px bf16+cl b256", {"data": packed.get(128), "resolution": 128, "precision": "bf16", "channels_last": True, "device": "cuda", "batch_size": 256}),
            ("gpu", "gpu 256px fp16+cl b256", {"data": packed.get(256), "resolution": 256, "precision": "fp16", "channels_last": True, "device": "cuda", "batch_size": 256}),
            ("gpu", "gpu 256px bf16+cl b256", {"data": packed.get(256), "resolution": 256, "precision": "bf16", "channels_last": True, "device": "cuda", "batch_size": 256}),
        ]  # fmt: skip
        runs: list[tuple[str, dict[str, Any]]] = []
        for group, name, kw in plan:
            if group not in wanted:
                continue
            processes = int(kw.get("processes", 1))
            for threads in (args.threads or [None]) if processes == 1 else [None]:
                for method in args.methods:
                    label = name.replace(" ", "_") + (f"_{threads}thr" if threads is not None else "")
                    label = f"{method}_{label}" if len(args.methods) > 1 else label
                    runs.append(
                        (label, {"processes": 1, **common, **kw, "threads": threads, "method": method})
                    )
        rows = []
        for round_index in range(args.repeat):
            for label, kw in runs:
                kw = dict(kw)
                row = run_setting(label, kw.pop("data"), work, **kw)
                row["round"] = round_index
                rows.append(row)
    if args.repeat > 1:
        print("# best and median over rounds (pairs/s)")
        for label, _ in runs:
            values = [r["pairs_per_s"] for r in rows if r["setting"] == label]
            print(
                f"{label:34s} best {max(values):7.1f}  median {statistics.median(values):7.1f}  ({len(values)} rounds)"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
