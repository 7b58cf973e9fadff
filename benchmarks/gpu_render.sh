#!/usr/bin/env bash
# `sie render` on one NVIDIA GPU: the Warp kernels with --device cuda. Prints the card, then
#   1. the same views rendered on cuda and on cpu: how many pixels differ and by how much (the
#      kernels are the same; a GPU's floating point may differ in the last bits);
#   2. images/s at 64 and 256 px, procedural objects and 50k-triangle meshes, one render process on
#      the GPU (end to end, long-job rate, per-step times), as benchmarks/render.py measures on CPU.
# Prepared for a session with a GPU; NOT measured in the session that wrote it (no GPU there).
# About 4 minutes.
#
#   bash benchmarks/gpu_render.sh            # uses .venv/bin/python, or PY=python bash ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'PYCODE'
import numpy as np
from sie.render.backends import RenderSettings, create_renderer
from sie.render.procedural import procedural_mesh
from sie.render.scene import views_from_latents

rng = np.random.default_rng(0)
latents = np.column_stack([rng.uniform(-1.5, 1.5, (8, 3)), rng.random(8), rng.uniform(0, 0.7, 8),
                           rng.uniform(0, 6, 8), rng.random(8)])
mesh = procedural_mesh("03001627", 0)
images = {}
for device in ("cpu", "cuda"):
    renderer = create_renderer("warp", RenderSettings(size=256), device=device)
    renderer.set_mesh(mesh)
    images[device] = renderer.render(views_from_latents(latents)).images.astype(int)
diff = np.abs(images["cpu"] - images["cuda"]).max(axis=-1)
print(f"cuda vs cpu, 8 views at 256 px: mean |diff| {diff.mean():.4f}, max {diff.max()}, "
      f"pixels differing by more than 2: {100 * (diff > 2).mean():.3f}%")
PYCODE
"$PY" benchmarks/render.py --device cuda --workers 1 --backends warp --sizes 64 256 --seconds 20 \
    --json gpu_render.json
