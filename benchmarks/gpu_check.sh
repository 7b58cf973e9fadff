#!/usr/bin/env bash
# The GPU checks of this project in one run (about 6-8 minutes on one H100), ending with one table:
#   1. render: the Warp kernels on cuda vs cpu (the same 8 views at 256 px: mean and max pixel
#      difference) and images/s at 64 and 256 px, procedural objects and 50k-triangle meshes;
#   2. train: `sie train` pairs/s at the paper configuration (reference ResNet-18, mlp 2048-2048-2048,
#      equi 256, online evaluator on), batch 256, 128 and 256 px, fp16 and bf16 autocast;
#   3. a short SIE run on the `mini` benchmark (the `cpu` preset, rendered on the GPU) at GPU speed,
#      with its full evaluation: wall times and the headline metrics next to their chance levels.
# Prepared on a machine without a GPU; everything it runs is tested on CPU by the suite.
#
#   bash benchmarks/gpu_check.sh                  # uses .venv/bin/python, or PY=python bash ...
#   OUT=/some/dir bash benchmarks/gpu_check.sh    # where the JSON, logs and the run go (default gpu_check/)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SIE=("$PY" -m sie)
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__)"

echo "== 1. render on cuda vs cpu, and images/s"
"$PY" - "$OUT/render_agreement.json" <<'PYCODE'
import json, sys
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
row = {"mean_abs_diff": float(diff.mean()), "max_abs_diff": int(diff.max()),
       "pixels_over_2_percent": float(100 * (diff > 2).mean())}
print(row)
json.dump(row, open(sys.argv[1], "w"))
PYCODE
"$PY" benchmarks/render.py --device cuda --workers 1 --backends warp --sizes 64 256 --seconds 10 \
    --json "$OUT/render.json" 2>&1 | tee "$OUT/render.log"

echo "== 2. training throughput at the paper configuration"
"$PY" benchmarks/train_step.py --only gpu --objects-per-class 300 --views 4 --warmup 5 --steps 20 --workers 8 \
    --json "$OUT/train_step.json" 2>&1 | tee "$OUT/train_step.log"

echo "== 3. SIE on the mini benchmark at GPU speed, with its evaluation"
rm -rf "$OUT/mini" "$OUT/mini_packed" "$OUT/run"
start=$(date +%s.%N)
"${SIE[@]}" render "$OUT/mini" --preset mini --device cuda --quiet
"${SIE[@]}" pack "$OUT/mini" "$OUT/mini_packed" --resolution 32
mid=$(date +%s.%N)
"${SIE[@]}" train --data "$OUT/mini_packed" --method sie --out "$OUT/run" --preset cpu --device cuda \
    --precision bf16 --set data.num_workers=4 2>&1 | tail -3
trained=$(date +%s.%N)
"${SIE[@]}" eval "$OUT/run" --data "$OUT/mini_packed" --device cuda 2>&1 | tail -3
end=$(date +%s.%N)
"$PY" - "$OUT" "$start" "$mid" "$trained" "$end" <<'PYCODE'
import json, sys
from pathlib import Path
out = Path(sys.argv[1]); start, mid, trained, end = map(float, sys.argv[2:6])
rows = [("GPU", (out / "gpu.txt").read_text().strip(), "")]
agree = json.loads((out / "render_agreement.json").read_text())
rows.append(("render cuda vs cpu, 8 views 256 px", f"mean |diff| {agree['mean_abs_diff']:.4f}, max {agree['max_abs_diff']}",
             f"{agree['pixels_over_2_percent']:.3f}% of pixels > 2"))
for r in json.loads((out / "render.json").read_text())["rows"]:
    rows.append((f"render {r['source']} {r['size']} px", f"{r['marginal_images_per_s']:.0f} images/s",
                 f"long-job rate, 1 process; end to end {r['images_per_s']:.0f}"))
for r in json.loads((out / "train_step.json").read_text()):
    rows.append((f"train {r['setting']}", f"{r['pairs_per_s']:.0f} pairs/s",
                 f"data wait {100 * r['data_wait_frac']:.1f}%, peak {r['peak_mem_mb']:.0f} MiB"))
info = json.loads((out / "run" / "run.json").read_text())
rows.append(("mini: render + pack", f"{mid - start:.0f} s", ""))
rows.append(("mini: train SIE (cpu preset)", f"{trained - mid:.0f} s", f"{info['step']} steps"))
rows.append(("mini: evaluate", f"{end - trained:.0f} s", ""))
results = json.loads((out / "run" / "eval" / "results.json").read_text())
for s in results["summary"]:
    key = (s["task"], s["metric"], s["part"], s["split"])
    if key in {("classification", "top1", "inv", "val"), ("rotation", "r2", "equi", "val"),
               ("rotation", "r2", "inv", "val"), ("retrieval", "PRE", "embedding", "val-all"),
               ("retrieval", "MRR", "embedding", "val-val")}:
        rows.append((f"mini: {s['task']} {s['metric']} {s['part']} ({s['split']})", f"{s['mean']:.3f}",
                     f"chance {s['chance']:.3f}" if s["chance"] is not None else ""))
width = max(len(r[0]) for r in rows)
print("\n| check | value | note |\n|---|---|---|")
for name, value, note in rows:
    print(f"| {name:<{width}} | {value} | {note} |")
PYCODE
