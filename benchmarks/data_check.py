"""Seconds of ``sie data check`` per 100,000 images of a 3DIEBench-size layout (256 px JPEGs, 50 views).

Writes a layout with ``tests/helpers/tiny_dataset.write_tiny_dataset`` (distinct 256 x 256 JPEGs and
float64 latents per view, split files, no ``dataset.json``) for each requested object count, then
runs the real command, ``sie data check ROOT --quiet --workers W``, in a fresh process and times it.
Two sizes give the per-image rate without the start-up (imports, process pool): the extra images of
the larger layout over its extra seconds.

    python benchmarks/data_check.py --objects 100 400 --views 50 --size 256 --workers 2
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.tiny_dataset import write_tiny_dataset


def _check_seconds(root: Path, workers: int) -> float:
    """Wall-clock seconds of ``sie data check ROOT`` in its own process; it must find the layout clean."""
    command = [sys.executable, "-m", "sie", "data", "check", str(root), "--quiet", "--workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sie data check failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, nargs="+", default=[100, 400], help="objects per layout")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--tmp", default=None, help="where to write the layouts (default: the system temp dir)"
    )
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    rows: list[tuple[int, float]] = []
    for objects in args.objects:
        folder = Path(tempfile.mkdtemp(prefix="sie-check-", dir=args.tmp))
        try:
            started = time.perf_counter()
            write_tiny_dataset(
                folder,
                classes=args.classes,
                objects_per_class=max(1, objects // args.classes),
                views=args.views,
                size=args.size,
            )
            written = time.perf_counter() - started
            images = args.classes * max(1, objects // args.classes) * args.views
            seconds = _check_seconds(folder, args.workers)
            rows.append((images, seconds))
            print(
                f"{images} images ({args.size} px): written in {written:.1f} s, checked in {seconds:.1f} s "
                f"({seconds / images * 1e5:.0f} s per 100k images, start-up included); load {os.getloadavg()}"
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if len(rows) >= 2:
        (small, t_small), (large, t_large) = rows[0], rows[-1]
        rate = (t_large - t_small) / (large - small)
        print(
            f"without start-up: {rate * 1e5:.0f} s per 100k images ({rate * 2_623_600 / 60:.0f} min for 2,623,600)"
        )


if __name__ == "__main__":
    main()
