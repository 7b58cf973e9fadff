"""Cost of SIE's hypernetwork predictor, materialised vs factorised, against a ResNet-18 step.

The reference applies the hypernetwork by materialising per-sample weights W(g) of shape (B, d, d)
(d = 1024 in the paper configuration). ``sie`` applies the same map as ``sum_k g_k (A_k z)`` without
building them (see src/sie/nn/predictors.py). This script times forward + backward of both on the
same parameters, and a forward + backward of the reference ResNet-18 for scale.

Usage (the numbers in benchmarks/README.md were made with exactly this):

    .venv/bin/python benchmarks/hypernetwork.py --dim 1024 --batch 128 --repeats 5

Options: ``--threads N`` sets torch's intra-op threads (default: torch's default), ``--backbone-res``
and ``--backbone-batch`` the ResNet-18 input (64 px, 64 images), ``--no-backbone`` times the
hypernetwork only, ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from sie.nn.backbones import build_backbone
from sie.nn.predictors import HypernetworkPredictor


def _time(step: Callable[[], None], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


def hypernetwork_step(
    predictor: HypernetworkPredictor, z: torch.Tensor, g: torch.Tensor
) -> Callable[[], None]:
    def step() -> None:
        predictor.zero_grad(set_to_none=True)
        z.grad = None
        predictor(z, g).square().mean().backward()

    return step


def backbone_step(model: torch.nn.Module, images: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(images).square().mean().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=1024, help="embedding dims d of the predictor")
    parser.add_argument("--batch", type=int, default=128, help="samples per hypernetwork call")
    parser.add_argument("--params", type=int, default=4, help="transformation parameters P")
    parser.add_argument("--backbone-res", type=int, default=64, help="ResNet-18 input side (px)")
    parser.add_argument("--backbone-batch", type=int, default=64, help="ResNet-18 images per step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-backbone", action="store_true", help="time the hypernetwork only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    predictor = HypernetworkPredictor(args.dim, args.params)
    z = torch.randn(args.batch, args.dim, requires_grad=True)
    g = torch.randn(args.batch, args.params)
    results: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "load_average_before": os.getloadavg()[0],
        "dim": args.dim,
        "batch": args.batch,
        "materialized_weight_mib": args.batch * args.dim * args.dim * 4 / 2**20,
    }
    outputs = {}
    for implementation in ("factorized", "materialized"):
        predictor.implementation = implementation  # type: ignore[assignment]
        seconds = _time(hypernetwork_step(predictor, z, g), args.repeats)
        results[f"{implementation}_ms_median"] = 1e3 * statistics.median(seconds)
        results[f"{implementation}_ms_min"] = 1e3 * min(seconds)
        with torch.no_grad():
            outputs[implementation] = predictor(z, g)
    difference = (outputs["factorized"] - outputs["materialized"]).abs().max()
    results["max_relative_difference"] = float(difference / outputs["materialized"].abs().max())

    stems = () if args.no_backbone else ("reference", "small")
    for stem in stems:
        model = build_backbone("resnet18", small_stem=stem == "small")
        images = torch.randn(args.backbone_batch, 3, args.backbone_res, args.backbone_res)
        seconds = _time(backbone_step(model, images), args.repeats)
        results[f"resnet18_{stem}_stem_ms_median"] = 1e3 * statistics.median(seconds)
        results[f"resnet18_{stem}_stem_ms_min"] = 1e3 * min(seconds)
    results["load_average_after"] = os.getloadavg()[0]

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"machine: {results['machine']}; load average {results['load_average_before']:.1f} -> "
        f"{results['load_average_after']:.1f}"
    )
    print(
        f"hypernetwork d={args.dim}, B={args.batch}, P={args.params}, forward+backward, fp32 "
        f"(materialised weights: {results['materialized_weight_mib']:.0f} MiB)"
    )
    for key in ("factorized", "materialized"):
        print(
            f"  {key:<13} median {results[f'{key}_ms_median']:9.1f} ms   min {results[f'{key}_ms_min']:9.1f} ms"
        )
    print(
        f"  max |factorized - materialized| / max |materialized| = {results['max_relative_difference']:.1e}"
    )
    if stems:
        print(
            f"resnet18 (reference variant) {args.backbone_res} px, batch {args.backbone_batch}, "
            "forward+backward, fp32"
        )
    for stem in stems:
        key = f"resnet18_{stem}_stem"
        print(
            f"  {stem + ' stem':<13} median {results[key + '_ms_median']:9.1f} ms   min {results[key + '_ms_min']:9.1f} ms"
        )


if __name__ == "__main__":
    main()
