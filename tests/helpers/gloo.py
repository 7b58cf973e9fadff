"""Run a worker script in 2 gloo processes (file:// rendezvous) and read what rank 0 saved."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]


def run_gloo_workers(worker_source: str, tmp_path: Path, world: int = 2, timeout: float = 120) -> Any:
    """Start ``world`` processes of ``python -c worker_source RANK WORLD INIT_FILE REPO OUT``; every one
    must exit 0 (their output is shown otherwise); returns ``torch.load(OUT)`` (written by rank 0)."""
    init_file, out = tmp_path / "init", tmp_path / "rank0.pt"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", worker_source, str(rank), str(world), str(init_file), str(REPO), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(world)
    ]
    try:
        logs = [p.communicate(timeout=timeout)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    return torch.load(out, weights_only=True)
