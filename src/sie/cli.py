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


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the descriptions' line breaks."""


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The layered configuration flags shared by every stage (see ``sie config keys``)."""
    group = parser.add_argument_group("configuration (preset -> --config -> --set -> flags)")
    group.add_argument("--preset", default="paper", help="named preset: paper | cpu-small")
    group.add_argument("--config", metavar="FILE.yaml", default=None, help="YAML file laid over the preset")
    group.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override one key, e.g. --set model.sim_coeff=5 (repeatable; keys: `sie config keys`)",
    )


def _resolve(args: argparse.Namespace, flags: dict[str, Any] | None = None) -> Any:
    from sie.config import resolve_config

    return resolve_config(args.preset, args.config, args.overrides, flags)


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
            "Checks the split files, every object directory, every JPEG (decoded) and every latent, or, for a\n"
            "packed store, the manifest and the size and sha256 of every file. Prints one line per problem\n"
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


# ---------------------------------------------------------------------------------------------------

_COMMANDS: list[Callable[[_SubParsers], None]] = [
    _register_config,
    _register_data,
    _register_pack,
    _register_version,
]


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sie`` console script; returns the exit code."""
    from sie.log import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
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
