#!/usr/bin/env bash
# Training throughput on one GPU: SIE at the paper configuration (reference ResNet-18, mlp 2048-2048-2048,
# equi 256, online evaluator on), 256 px, global batch 256, bf16 autocast + channels_last, packed store.
# Prints the card's name and one row: median pairs/s over 20 timed steps (images/s = 2 x pairs/s),
# data-wait fraction, peak CUDA memory. Prepared for a GPU session; NOT measured in the session that
# wrote it (no GPU there). About 5 minutes including the dataset generation.
#
#   bash benchmarks/gpu_train_step.sh            # uses .venv/bin/python, or PY=python bash ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
"$PY" benchmarks/train_step.py --only gpu --objects-per-class 300 --views 4 --warmup 5 --steps 20 --workers 8 \
    --json gpu_train_step.json
"$PY" -c "
import json
for row in json.load(open('gpu_train_step.json')):
    print(f\"{row['device']}: {row['pairs_per_s']:.0f} pairs/s = {2 * row['pairs_per_s']:.0f} images/s at \"
          f\"{row['resolution']} px, batch {row['batch_size']}, {row['precision']}, data wait \"
          f\"{100 * row['data_wait_frac']:.1f}%, peak {row['peak_mem_mb']:.0f} MiB\")
"
