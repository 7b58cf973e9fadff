"""Capsule routing's share of a training step, and step pairs/s of EquiCaps and CapsIE beside SIE, on CPU.

One process, methods interleaved round by round so machine load hits them alike. Each method is built by
``sie.methods.build_method`` from the ``paper`` preset at the same settings (reference ResNet-18 with its
standard stem, ``--resolution`` px, ``--batch`` pairs, fp32, Adam), on random images and unit quaternions
(the step's cost does not depend on the pixels). A step is forward + backward + ``Adam.step``; the online
evaluator is not included (it is the same for every method). The routing time is the capsule projector's
self-routing layer alone, forward + backward, on the inputs it received in the timed steps (captured by a
hook), timed the same way; its share is routing time / step time.

    python benchmarks/capsule_routing.py                          # 64 px, batch 32, 2 threads
    python benchmarks/capsule_routing.py --resolution 128 --batch 16 --steps 4 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sie.config import resolve_config  # noqa: E402
from sie.data.batch import Batch  # noqa: E402
from sie.methods import Method, build_method  # noqa: E402
from sie.nn.capsules import SelfRouting2d  # noqa: E402

METHODS = ("sie", "equicaps", "capsie")


def make_batch(batch: int, resolution: int, seed: int) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    quaternions = torch.nn.functional.normalize(torch.randn(batch, 1, 4, generator=gen), dim=-1)
    return Batch(
        views=torch.randn(batch, 2, 3, resolution, resolution, generator=gen),
        transforms=quaternions,
        labels=torch.zeros(batch, dtype=torch.long),
    )


def build(name: str, resolution: int, batch: int) -> Method:
    cfg = resolve_config(
        "paper",
        overrides=[
            f"model.method={name}",
            f"data.resolution={resolution}",
            f"train.batch_size={batch}",
            "train.device=cpu",
            "train.precision=fp32",
        ],
    )
    return build_method(cfg, 4)


def time_steps(method: Method, optimizer: torch.optim.Optimizer, batch: Batch, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        out = method(batch)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def time_routing(layer: SelfRouting2d, inputs: list[tuple[torch.Tensor, torch.Tensor]], reps: int) -> float:
    """Median seconds of the routing layer's forward + backward over the inputs of one step (both views)."""
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        for activations, poses in inputs:
            a = activations.detach().requires_grad_()
            u = poses.detach().requires_grad_()
            out_a, out_u = layer(a, u)
            assert out_u is not None
            (out_a.sum() + out_u.sum()).backward()
        samples.append(time.perf_counter() - start)
    layer.zero_grad(set_to_none=True)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="pairs per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method per round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = make_batch(args.batch, args.resolution, 0)
    built = {name: build(name, args.resolution, args.batch) for name in args.methods}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in built.items()}
    captured: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for name, method in built.items():
        for module in method.modules():
            if isinstance(module, SelfRouting2d):
                store = captured.setdefault(name, [])

                def hook(_m: torch.nn.Module, inputs: tuple[torch.Tensor, ...], store=store) -> None:
                    if len(store) < 2:  # the two views of one step
                        store.append((inputs[0].detach().clone(), inputs[1].detach().clone()))

                module.register_forward_pre_hook(hook)
        time_steps(method, optimizers[name], batch, args.warmup)
    step_times: dict[str, list[float]] = {name: [] for name in built}
    routing_times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(args.repeat):
        for name, method in built.items():
            step_times[name] += time_steps(method, optimizers[name], batch, args.steps)
            layers = [m for m in method.modules() if isinstance(m, SelfRouting2d)]
            if layers:
                routing_times[name].append(time_routing(layers[0], captured[name], args.steps))
    load = os.getloadavg()
    print(
        f"# {args.resolution} px, batch {args.batch} pairs, fp32, {args.threads} threads, "
        f"{args.repeat} rounds x {args.steps} steps; torch {torch.__version__}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        "| method | head params (not backbone) | step s (median) | pairs/s | routing s (fwd+bwd) | routing share |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, method in built.items():
        step = statistics.median(step_times[name])
        heads = sum(p.numel() for n, p in method.named_parameters() if not n.startswith("backbone."))
        if routing_times[name]:
            routing = statistics.median(routing_times[name])
            routing_text, share = f"{routing:.3f}", f"{100 * routing / step:.1f} %"
        else:
            routing_text, share = "-", "-"
        print(f"| {name} | {heads:,} | {step:.3f} | {args.batch / step:.1f} | {routing_text} | {share} |")


if __name__ == "__main__":
    main()
