"""The ``sie`` command: argument parsing and dispatch only; the work lives in the library.

Each subcommand is one ``_register_*`` function below, listed in ``_COMMANDS``. A subcommand is
registered only once it works end to end (no stubs). Errors meant for users (:class:`SieError`)
print one line and exit with their code (2 bad usage/input, 1 the work failed); ``--debug``
adds the traceback.
"""

from __future__ import annotations

import argparse
import platform
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from sie import __version__
from sie.errors import SieError

_SubParsers = Any  # argparse's _SubParsersAction is private


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks and shows a default only where it says something: not for
    required flags, switches, unset (None) or empty values, nor where the help text names it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        silent = (
            action.required
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
            or "default" in text
            or not action.option_strings
        )
        return text if silent else f"{text} (default: {default})"


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The layered configuration flags shared by every stage (see ``sie config keys``)."""
    group = parser.add_argument_group("configuration (preset -> --config -> --set -> flags)")
    group.add_argument("--preset", default="paper", help="named preset: paper | cpu-small | cpu")
    group.add_argument("--config", metavar="FILE.yaml", default=None, help="YAML file laid over the preset")
    group.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override one key, e.g. --set model.sim_coeff=5 (repeatable; keys: `sie config keys`)",
    )


_FLAG_OF_KEY: dict[str, str] = {}
"""Dotted config key -> the flag that sets it, for messages naming the flag at fault."""


def _config_flag(parser: Any, *option_strings: str, key: str, **kwargs: Any) -> None:
    """A named flag that sets the config key ``key``: its value lands in ``args`` under that key."""
    existing = _FLAG_OF_KEY.setdefault(key, option_strings[0])
    if existing != option_strings[0]:
        raise AssertionError(f"config key {key} is set by both {existing} and {option_strings[0]}")
    parser.add_argument(*option_strings, dest=key, default=None, **kwargs)


def _config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The values of the command's config flags (dotted key -> value; None = not given)."""
    return {key: value for key, value in vars(args).items() if "." in key}


def _resolve(args: argparse.Namespace, **kwargs: Any) -> Any:
    """The command's config: :func:`sie.config.resolve_config` over its preset, file, ``--set`` and flags."""
    from sie.config import resolve_config

    return resolve_config(
        args.preset, args.config, args.overrides, _config_flags(args), flag_names=_FLAG_OF_KEY, **kwargs
    )


# ---- sie version ---------------------------------------------------------------------------------


def _cmd_version(args: argparse.Namespace) -> int:
    import torch

    cuda = (
        f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s)"
        if torch.cuda.is_available()
        else "no CUDA device"
    )
    print(f"sie {__version__}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, {cuda}")
    return 0


def _register_version(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "version", help="print the versions of sie, Python and PyTorch", formatter_class=_HelpFormatter
    )
    p.set_defaults(func=_cmd_version)


# ---- sie config ----------------------------------------------------------------------------------


def _cmd_config_show(args: argparse.Namespace) -> int:
    import yaml

    from sie.config import config_to_dict

    print(yaml.safe_dump(config_to_dict(_resolve(args)), sort_keys=False), end="")
    return 0


def _cmd_config_keys(args: argparse.Namespace) -> int:
    from sie.config import _type_name, config_keys

    for key in config_keys():
        unit = f" [{key.unit}]" if key.unit else ""
        print(f"{key.name} = {key.default!r}{unit}  ({_type_name(key.type)})\n    {key.help}")
    return 0


def _register_config(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "config",
        help="show a resolved configuration, or list every key with its default, unit and meaning",
        formatter_class=_HelpFormatter,
    )
    config_sub = p.add_subparsers(dest="config_command", metavar="{show,keys}", required=True)
    show = config_sub.add_parser(
        "show",
        help="print the resolved config as YAML (what a run would write)",
        formatter_class=_HelpFormatter,
    )
    _add_config_arguments(show)
    show.set_defaults(func=_cmd_config_show)
    keys = config_sub.add_parser("keys", help="list every config key", formatter_class=_HelpFormatter)
    keys.set_defaults(func=_cmd_config_keys)


# ---- sie data check ------------------------------------------------------------------------------


def _cmd_data_check(args: argparse.Namespace) -> int:
    from sie.data.check import check_dataset
    from sie.data.problems import summarize_problems

    report = check_dataset(args.root, workers=args.workers, progress=not args.quiet)
    for problem in report.problems:
        print(problem)
    checked = ", ".join(f"{name} {n} objects" for name, n in report.objects.items())
    print(
        f"{args.root}: {summarize_problems(report.problems)}" + (f" (checked {checked})" if checked else "")
    )
    if not report.problems:
        return 0
    if args.skip_bad:
        excluded = ", ".join(f"{name} {n}" for name, n in report.excluded.items())
        if report.usable_with_skip_bad:
            print(f"--skip-bad: these objects would be excluded ({excluded}); the rest is usable")
            return 0
        print(
            "--skip-bad cannot fix this dataset: some problems are not confined to objects (or a split would be empty)"
        )
    return 1


def _register_data(sub: _SubParsers) -> None:
    p = sub.add_parser("data", help="inspect datasets", formatter_class=_HelpFormatter)
    data_sub = p.add_subparsers(dest="data_command", metavar="{check}", required=True)
    check = data_sub.add_parser(
        "check",
        help="scan a dataset (3DIEBench layout or packed store), print every problem; exit 1 if any",
        description=(
            "Checks the split files (train and val both there, none empty), dataset.json (a render that did not\n"
            "finish), object folders listed in no split, every object directory, every JPEG (decoded; RGB, one\n"
            "size) and every latent (length, float64, finite and inside the sampling ranges), or, for a packed\n"
            "store, the manifest and the size and sha256 of every file. Prints one line per problem\n"
            "(path: kind: what was expected) and a count. Exit 0 if clean, 1 if any problem."
        ),
        formatter_class=_HelpFormatter,
    )
    check.add_argument("root", metavar="ROOT", help="dataset directory or packed store")
    check.add_argument(
        "--skip-bad",
        action="store_true",
        help="also say how many objects --skip-bad would exclude; exit 0 if that leaves a usable dataset",
    )
    check.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(func=_cmd_data_check)


# ---- sie pack ------------------------------------------------------------------------------------


def _cmd_pack(args: argparse.Namespace) -> int:
    from sie.data.pack import pack_dataset

    splits = [s for s in args.splits.split(",") if s] if args.splits else None
    pack_dataset(
        args.root,
        args.out,
        args.resolution,
        workers=args.workers,
        splits=splits,
        skip_bad=args.skip_bad,
        progress=not args.quiet,
    )
    print(args.out)
    return 0


def _register_pack(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "pack",
        help="build a packed store (uint8 memory-mapped images at one resolution) from a 3DIEBench-layout dataset",
        description=(
            "Decodes every JPEG once, resizes it to PX x PX (antialiased) and writes uint8 shards that the\n"
            "loader memory-maps (no PIL, no file open per sample). Re-run the same command to resume an\n"
            "interrupted pack: finished shards are kept. `sie train --data OUT` then reads the store."
        ),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="dataset directory in the 3DIEBench layout")
    p.add_argument("out", metavar="OUT", help="directory of the packed store (created)")
    p.add_argument("--resolution", type=int, required=True, metavar="PX", help="side of the stored images")
    p.add_argument("--workers", type=int, default=None, help="conversion processes (default: all cores)")
    p.add_argument("--splits", default=None, help="comma-separated splits (default: every NAME_images.npy)")
    p.add_argument("--skip-bad", action="store_true", help="exclude broken objects (listed in the manifest)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_pack)


# ---- sie train -----------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sie.config import CONFIG_FILENAME
    from sie.engine import train
    from sie.errors import UsageError
    from sie.log import is_main_process

    out = Path(args.out)
    if args.resume:
        saved = out / CONFIG_FILENAME
        if not saved.is_file():
            raise UsageError(f"--resume: {out} has no {CONFIG_FILENAME}; is it a run directory of sie train?")
        if args.config is None:
            args.config = str(saved)  # the run's own config; flags and --set given now are changes
    elif _config_flags(args)["model.method"] is None and args.config is None:
        raise UsageError("--method NAME is required for a new run (see `sie methods`)")
    from sie.config import TRAIN_SECTIONS

    cfg = _resolve(args, sections=TRAIN_SECTIONS)
    train(
        cfg, out, resume=args.resume, allow_config_change=args.allow_config_change, max_steps=args.max_steps
    )
    if is_main_process():  # one line for scripts to capture, not one per torchrun worker
        print(out)
    return 0


def _register_train(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "train",
        help="pre-train a method on a 3DIEBench-layout dataset or packed store (CPU, GPU or torchrun)",
        description=(
            "Writes RUN/config.yaml, checkpoint.pt, backbone.safetensors, metrics.jsonl and run.json.\n"
            "Several GPUs or nodes: torchrun --nproc-per-node N -m sie train ... (train.batch_size is global).\n"
            "SIGINT/SIGTERM finish the step, checkpoint and exit 0; continue with --out RUN --resume.\n"
            "See docs/training.md."
        ),
        formatter_class=_HelpFormatter,
    )
    _config_flag(
        p, "--data", key="data.root", metavar="ROOT|PACKED", help="dataset directory or packed store"
    )
    _config_flag(
        p, "--method", key="model.method", metavar="NAME", help="registered method (see `sie methods`)"
    )
    p.add_argument("--out", metavar="RUN", required=True, help="run directory")
    _config_flag(p, "--epochs", key="train.epochs", type=int, metavar="N", help="train.epochs")
    _config_flag(
        p, "--batch-size", key="train.batch_size", type=int, metavar="N", help="train.batch_size (global)"
    )
    _config_flag(p, "--resolution", key="data.resolution", type=int, metavar="PX", help="data.resolution")
    _config_flag(p, "--device", key="train.device", choices=["auto", "cpu", "cuda"], help="train.device")
    _config_flag(
        p, "--precision", key="train.precision", choices=["fp32", "bf16", "fp16"], help="train.precision"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue RUN from its checkpoint.pt, with RUN/config.yaml as the config (unless --config)",
    )
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: accept a config that differs from the run's (the change is recorded in run.json)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="stop after global step N as if interrupted (checkpoint written; resumable)",
    )
    _add_config_arguments(p)
    p.set_defaults(func=_cmd_train)


# ---- sie eval ------------------------------------------------------------------------------------


def _cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sie.config import CONFIG_FILENAME, load_config_file
    from sie.errors import UsageError
    from sie.eval import evaluate
    from sie.eval.presets import resolve_eval_config

    run = Path(args.run)
    if not (run / CONFIG_FILENAME).is_file():
        raise UsageError(f"{run}: no {CONFIG_FILENAME}; is it a run directory written by `sie train`?")
    eval_cfg = resolve_eval_config(
        load_config_file(run / CONFIG_FILENAME),
        args.preset,
        args.config,
        args.overrides,
        _config_flags(args),
        flag_names=_FLAG_OF_KEY,
    )
    path = evaluate(
        run,
        args.data,
        eval_cfg,
        preset_name=args.preset or "",
        refuse_stale_features=args.refuse_stale_features,
    )
    print(path)
    return 0


def _register_eval(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a run: probes on cached features, predictor retrieval -> RUN/eval/results.json",
        description=(
            "Extracts the frozen backbone's features of every view once (cached in RUN/eval/features), trains\n"
            "the protocol's probes on them (classification, rotation/colour/... R² per representation part),\n"
            "scores the predictor (MRR, H@k, PRE) and writes RUN/eval/results.json with chance levels.\n"
            "Settings: the run's eval section, or --preset; then --config (an eval: section), --set eval.KEY=VALUE\n"
            "and the flags below. See docs/evaluation.md."
        ),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run directory written by sie train")
    p.add_argument("--data", metavar="ROOT|PACKED", required=True, help="dataset directory or packed store")
    p.add_argument(
        "--preset",
        choices=["quick", "paper"],
        default=None,
        help="eval preset; none given = the run's own eval section",
    )
    p.add_argument("--config", metavar="FILE.yaml", default=None, help="YAML with an eval: section")
    p.add_argument(
        "--set",
        metavar="eval.KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override one eval key, e.g. --set eval.probe_epochs=50 (repeatable)",
    )
    _config_flag(p, "--device", key="eval.device", choices=["auto", "cpu", "cuda"], help="eval.device")
    _config_flag(
        p, "--seeds", key="eval.probe_seeds", type=int, nargs="+", metavar="S", help="eval.probe_seeds"
    )
    _config_flag(
        p,
        "--reference-bn",
        key="eval.reference_bn",
        action="store_const",
        const=True,
        help="reproduce the reference's train-mode BatchNorm during probe training (slow: no feature cache)",
    )
    _config_flag(
        p,
        "--ood-split",
        key="eval.ood_split",
        metavar="NAME|DIR",
        help="eval.ood_split: a split of the dataset, or another dataset (its val split), for OOD rotation R²",
    )
    _config_flag(
        p,
        "--orbit",
        key="eval.orbit_data",
        metavar="DIR",
        help="eval.orbit_data: rendered orbit sweeps (an `orbit` split) for the latent-steering figure",
    )
    p.add_argument(
        "--refuse-stale-features",
        action="store_true",
        help="error out on stale cached features (another checkpoint, a dataset changed in place, an older "
        "sie) instead of recomputing them",
    )
    p.set_defaults(func=_cmd_eval)


# ---- sie report ----------------------------------------------------------------------------------


def _cmd_report(args: argparse.Namespace) -> int:
    from sie.extras import require_extra

    require_extra("matplotlib", "report", "sie report")
    from sie.eval.report import write_report

    md_path, html_path = write_report(args.runs, args.out)
    print(md_path)
    print(html_path)
    return 0


def _register_report(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "report",
        help="compare evaluated runs: report.md + self-contained report.html with tables and figures",
        description=(
            "Reads RUN/eval/results.json (run `sie eval` first), RUN/eval/figures.npz and RUN/metrics.jsonl of\n"
            "each run; writes DIR/report.md, DIR/report.html (images embedded, opens offline) and DIR/figures/."
        ),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("runs", metavar="RUN", nargs="+", help="evaluated run directories")
    p.add_argument("--out", metavar="DIR", required=True, help="output directory")
    p.set_defaults(func=_cmd_report)


# ---- sie methods ---------------------------------------------------------------------------------


def _cmd_methods(args: argparse.Namespace) -> int:
    from sie.methods import METHODS

    cfg = _resolve(args)

    import dataclasses

    def value(key: str) -> Any:
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part)
        return node

    width = max(len(name) for name in METHODS)
    for name, spec in METHODS.items():
        print(f"{name:<{width}}  {spec.description}")
        settings = [f"{key}={value(key)}" for key in spec.keys]
        if spec.section is not None:
            section = cfg.model.section(spec.section_name)
            settings += [
                f"model.{spec.section_name}.{f.name}={getattr(section, f.name)}"
                for f in dataclasses.fields(section)
            ]
        views = spec.views_per_sample(
            dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, method=name))
        )
        facts = [f"reference: {spec.reference}"] + ([f"{views} views per sample"] if views != 2 else [])
        print(f"{'':<{width}}  {'; '.join(facts)}; {', '.join(settings)}")
    return 0


def _register_methods(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "methods",
        help="list the registered methods with a one-line description and their key hyperparameters",
        description=(
            "Every method `sie train --method NAME` accepts, the reference class it reproduces and its key\n"
            "hyperparameters as resolved from --preset/--config/--set. Losses: docs/methods.md."
        ),
        formatter_class=_HelpFormatter,
    )
    _add_config_arguments(p)
    p.set_defaults(func=_cmd_methods)


# ---- sie render ----------------------------------------------------------------------------------


def _parse_shard(text: str) -> tuple[int, int]:
    from sie.errors import UsageError

    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. 0/4")
    return int(index), int(count)


def _cmd_render(args: argparse.Namespace) -> int:
    from sie.render.generator import render_dataset
    from sie.render.settings import resolve_render_config

    flags = _config_flags(args)
    names = dict(_FLAG_OF_KEY)
    if flags["render.objects_per_class"] is not None:
        # an explicit count replaces the full preset's 3DIEBench class sizes
        flags["render.class_sizes"] = "uniform"
        names["render.class_sizes"] = names["render.objects_per_class"]
    cfg = resolve_render_config(args.preset, args.config, args.overrides, flags, names)
    summary = render_dataset(cfg.render, args.out, shard=_parse_shard(args.shard), progress=not args.quiet)
    print(summary.root)
    return 0


def _register_render(sub: _SubParsers) -> None:
    p = sub.add_parser(
        "render",
        help="render a 3DIEBench-style dataset offline (procedural objects, ShapeNet, ModelNet or a mesh folder)",
        description=(
            "Renders the 3DIEBench scene (fixed camera, coloured floor, coloured spot light, weak sun) for every\n"
            "view of every object into OUT in the exact 3DIEBench layout, with split files, dataset.json and\n"
            "preview.png. Images and latents depend only on the seed, not on --workers or --shard; re-running the\n"
            "same command resumes (finished objects are kept). Presets: tiny (5 classes x 6 objects x 6 views,\n"
            "32 px), mini (10 x 100 x 20, 32 px, zoomed camera: the cpu preset's), small (the default: 10 x 20 x 10,\n"
            "64 px), full (55 classes with 3DIEBench's class sizes, 50 views, 256 px: --preset full)."
        ),
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "out", metavar="OUT", help="dataset directory (created; must be empty or this same dataset)"
    )
    p.add_argument(
        "--preset",
        default="small",
        choices=("tiny", "mini", "small", "full"),
        help="render size preset; the full benchmark (2.6M images, hours to days) only when named",
    )
    p.add_argument("--config", metavar="FILE.yaml", default=None, help="YAML file laid over the preset")
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override one key, e.g. --set render.samples_per_pixel=8 (keys: `sie config keys`)",
    )
    _config_flag(
        p, "--source", key="render.source", help="procedural | shapenet:DIR | modelnet:DIR | folder:DIR"
    )
    _config_flag(
        p, "--classes", key="render.classes", type=int, metavar="N", help="number of classes (the largest N)"
    )
    _config_flag(
        p,
        "--objects-per-class",
        key="render.objects_per_class",
        type=int,
        metavar="N",
        help="objects per class (also sets render.class_sizes=uniform)",
    )
    _config_flag(p, "--views", key="render.views", type=int, metavar="N", help="views per object")
    _config_flag(p, "--size", key="render.size", type=int, metavar="PX", help="image side")
    _config_flag(
        p,
        "--variant",
        key="render.variant",
        choices=("base", "T", "OOD"),
        help="base, -T (translations) or -OOD",
    )
    _config_flag(
        p, "--workers", key="render.workers", type=int, metavar="N", help="render processes (0 = all cores)"
    )
    p.add_argument(
        "--shard", default="0/1", metavar="I/N", help="render only objects I, I+N, I+2N, ... of the plan"
    )
    _config_flag(p, "--seed", key="render.seed", type=int, metavar="S", help="generator seed")
    _config_flag(
        p, "--backend", key="render.backend", metavar="NAME", help="render backend: auto | warp | embree"
    )
    _config_flag(p, "--device", key="render.device", help="auto | cpu | cuda | cuda:N")
    _config_flag(
        p,
        "--orbit",
        key="render.orbit_factor",
        metavar="FACTOR",
        help="orbit sweep of one factor (rot_x ... trans_z)",
    )
    _config_flag(
        p,
        "--skip-bad",
        key="render.skip_bad",
        action="store_const",
        const=True,
        help="skip unreadable or degenerate objects (listed in dataset.json)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_render)


# ---------------------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from sie.demo import run_demo

    baseline = None if args.baseline == "none" else args.baseline
    result = run_demo(
        args.out,
        method=args.method,
        baseline=baseline,
        size=args.size,
        device=args.device,
        seed=args.seed,
        epochs=args.epochs,
    )
    names = [r.method for r in result.runs]
    rows: list[str] = []
    for label, *_ in [row for r in result.runs for row in r.headline]:
        if label not in rows:
            rows.append(label)
    width = max(len(label) for label in rows) if rows else 0
    print(
        f"\nsie demo: {' and '.join(names)} on a rendered procedural benchmark, {result.wall_time_s / 60:.1f} min"
    )
    print("  " + " " * width + "".join(f"{name:>10}" for name in names) + "    chance")
    for label in rows:
        cells, chance = "", None
        for run in result.runs:
            found = next(((v, c) for lab, v, c in run.headline if lab == label), None)
            cells += f"{found[0]:10.3f}" if found else f"{'–':>10}"
            chance = found[1] if found else chance
        print(f"  {label:<{width}}{cells}    {chance:.3f}")
    print("\n" + result.summary)
    print(f"\nreport: {result.report_html}\n        {result.report_md}")
    print(
        "runs:   " + "\n        ".join(str(r.run_dir) for r in result.runs) + f"\ndata:   {result.data_dir}"
    )
    return 0


def _register_demo(sub: _SubParsers) -> None:
    from sie.demo import DEMO_SIZES

    p = sub.add_parser(
        "demo",
        help="the whole pipeline, small, on CPU: render, pack, train, evaluate, report",
        description=(
            "Renders a procedural 3DIEBench-style benchmark (the mini preset), packs it, trains a method and an\n"
            "invariant baseline on it for the same number of steps (the cpu preset), runs the evaluation protocol\n"
            "on both and writes one report. No download. Re-running with the same --out reuses the rendered data\n"
            "and resumes an interrupted training run."
        ),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--out", default="demo", help="output folder (data, packed store, run, report)")
    p.add_argument("--method", default="sie", help="registered method to train (see `sie methods`)")
    p.add_argument(
        "--baseline",
        default="vicreg",
        help="a second method trained for the same steps and shown side by side ('none' to skip)",
    )
    p.add_argument("--size", default="small", choices=sorted(DEMO_SIZES), help="benchmark size and budget")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="training device")
    p.add_argument(
        "--epochs", type=int, default=None, help="training epochs per method (default: the size's)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the rendering and the training")
    p.set_defaults(func=_cmd_demo)


# In pipeline order, as `sie --help` lists them; then the helpers.
_COMMANDS: list[Callable[[_SubParsers], None]] = [
    _register_render,
    _register_data,
    _register_pack,
    _register_train,
    _register_eval,
    _register_report,
    _register_demo,
    _register_methods,
    _register_config,
    _register_version,
]


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser`` (itself included)."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found.extend(_leaf_parsers(child))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sie",
        description=(
            "Self-supervised learning of split invariant-equivariant representations (SIE) and the "
            "3DIEBench benchmark.\nExit codes: 0 success, 1 the work failed or found problems, 2 bad usage or input."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sie {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _COMMANDS:
        register(sub)
    for each in _leaf_parsers(parser):
        each.allow_abbrev = False  # `--epoch 2` is an error, not a silent `--epochs 2`
        each.set_defaults(_parser=each)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sie`` console script; returns the exit code."""
    from sie.log import setup_logging

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the subcommand that got them, with its own usage line
        args._parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    setup_logging()
    try:
        return int(args.func(args) or 0)
    except SieError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"sie {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"sie {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
