"""How much relative rotation can a backbone read from a benchmark in a given number of steps (or
seconds) when it is *told* the answer? A calibration for the study and the way the ``cpu`` preset's
backbone was chosen; not a method of the library.

The backbone and a pair head (concat of the two views' D-d features -> 512 -> 4) are trained end to
end with MSE on the relative-rotation quaternion of R_a^-1 R_b (the rotation probe's target), on random
view pairs of the train split, with the same optimiser, batch size, precision and channels_last as the
cpu-small preset. The val split's pooled R² (the same metric and constant-predictor floor as the
evaluation protocol) is printed every ``--eval-every`` steps. If this supervised ceiling stays near the
floor after N steps, no self-supervised method can be expected to beat the floor after N steps either.

``wall_s`` in the curve counts training time only (the val evaluations are excluded), so a curve
answers "what R² after T seconds of training on this machine"; ``--max-seconds`` stops at that budget.

Usage (repository root; PACKED is a packed store, e.g. the study's OUT/packed):

    .venv/bin/python benchmarks/rotation_ceiling.py PACKED --steps 250 --out ceiling.json
    .venv/bin/python benchmarks/rotation_ceiling.py PACKED --arch convnet --batch-size 128 \
        --steps 100000 --max-seconds 600 --eval-every 200 --out ceiling_convnet.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from sie.data.source import open_split
from sie.data.transforms import normalize
from sie.eval.metrics import constant_predictor_r2, pooled_r2
from sie.geometry import euler_xyz_to_quaternion, relative_rotation_quaternion
from sie.nn.backbones import build_backbone


def load_split(root: Path, split: str) -> tuple[Tensor, Tensor]:
    """All views of a split: uint8 (N, V, 3, H, W) and float64 latents (N, V, L)."""
    source = open_split(root, split)
    views = list(range(source.views_per_object))
    images = torch.stack([source.read_views(i, views) for i in range(source.num_objects)])
    return images, torch.from_numpy(np.asarray(source.latents, dtype=np.float64))


def pair_targets(latents: Tensor, objects: Tensor, view_a: Tensor, view_b: Tensor) -> Tensor:
    """(n, 4) float32 quaternions of R_a^-1 R_b, as the evaluation's rotation task."""
    q_a = euler_xyz_to_quaternion(latents[objects, view_a, :3])
    q_b = euler_xyz_to_quaternion(latents[objects, view_b, :3])
    return relative_rotation_quaternion(q_a, q_b).float()


def random_pairs(num_objects: int, views: int, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    objects = torch.randint(0, num_objects, (n,), generator=gen)
    view_a = torch.randint(0, views, (n,), generator=gen)
    view_b = (view_a + 1 + torch.randint(0, views - 1, (n,), generator=gen)) % views
    return objects, view_a, view_b


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("packed", type=Path)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the curve as JSON here")
    parser.add_argument("--arch", default="resnet18", help="backbone (model.arch)")
    parser.add_argument("--width", type=int, default=0, help="model.width (0 = the arch's default)")
    parser.add_argument("--small-stem", action="store_true", help="model.small_stem (ResNets)")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop after this much training time")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    train_images, train_latents = load_split(args.packed, "train")
    val_images, val_latents = load_split(args.packed, "val")
    num_objects, views = train_images.shape[:2]

    def features_of(net: nn.Module, images: Tensor) -> Tensor:
        x = normalize(images).contiguous(memory_format=torch.channels_last)
        return net(x)

    backbone = build_backbone(args.arch, small_stem=args.small_stem, width=args.width)
    backbone = backbone.to(memory_format=torch.channels_last)
    dim = int(backbone.num_features)
    head = nn.Sequential(nn.Linear(2 * dim, 512), nn.ReLU(), nn.Linear(512, 4))
    optimizer = torch.optim.Adam([*backbone.parameters(), *head.parameters()], lr=1e-3)
    gen = torch.Generator().manual_seed(args.seed)
    val_pairs = random_pairs(val_images.shape[0], views, 2 * val_images.shape[0] * views, gen)
    val_targets = pair_targets(val_latents, *val_pairs)
    train_targets_for_floor = pair_targets(train_latents, *random_pairs(num_objects, views, 20_000, gen))
    floor = constant_predictor_r2(train_targets_for_floor, val_targets)

    @torch.no_grad()
    def val_r2() -> float:
        backbone.eval()
        head.eval()
        outputs = []
        objects, view_a, view_b = val_pairs
        with torch.autocast("cpu", torch.bfloat16):
            for i in range(0, objects.numel(), 256):
                o, a, b = objects[i : i + 256], view_a[i : i + 256], view_b[i : i + 256]
                f = torch.cat(
                    [features_of(backbone, val_images[o, a]), features_of(backbone, val_images[o, b])], 1
                )
                outputs.append(head(f).float())
        backbone.train()
        head.train()
        return pooled_r2(torch.cat(outputs), val_targets)

    curve = []
    trained_s = 0.0
    for step in range(1, args.steps + 1):
        step_started = time.perf_counter()
        objects, view_a, view_b = random_pairs(num_objects, views, args.batch_size, gen)
        with torch.autocast("cpu", torch.bfloat16):
            f = torch.cat(
                [
                    features_of(backbone, train_images[objects, view_a]),
                    features_of(backbone, train_images[objects, view_b]),
                ],
                1,
            )
            prediction = head(f).float()
        loss = nn.functional.mse_loss(prediction, pair_targets(train_latents, objects, view_a, view_b))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        trained_s += time.perf_counter() - step_started
        out_of_time = args.max_seconds is not None and trained_s >= args.max_seconds
        if step % args.eval_every == 0 or step == args.steps or out_of_time:
            point = {"step": step, "train_mse": round(loss.item(), 4), "val_r2": round(val_r2(), 4)}
            point["wall_s"] = round(trained_s, 1)
            curve.append(point)
            print(json.dumps(point), flush=True)
        if out_of_time:
            break
    summary = {
        "packed": str(args.packed),
        "floor": round(floor, 4),
        "batch_size": args.batch_size,
        "arch": args.arch,
        "width": args.width,
        "small_stem": args.small_stem,
        "parameters": sum(p.numel() for p in backbone.parameters()),
        "threads": torch.get_num_threads(),
        "load_average_at_end": [round(x, 2) for x in __import__("os").getloadavg()],
        "curve": curve,
    }
    print(json.dumps({"floor": summary["floor"], "final_val_r2": curve[-1]["val_r2"]}))
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
