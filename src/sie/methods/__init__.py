"""The method zoo: every pre-training method of the SIE reference, its successors, and a supervised baseline.

Each method lives in one module of this package and registers itself with
:func:`~sie.methods.registry.register_method` (name, description, loss terms, views per sample, its
typed ``model.<name>.*`` section). Importing this package imports every public module in it, and every
module that an installed distribution names in the entry-point group ``sie.methods``, so adding a
method means adding one file (tutorial: docs/methods.md). Variants that are orthogonal to the method
(MLP vs hypernetwork predictor, deep hypernetwork, generated biases, rotation vs rotation + colour
parameters) are config fields, not names: ``model.predictor_type``, ``model.hypernetwork``, ...
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points

from sie.methods.base import Method, MethodOutput, ParamGroup, StepProgress
from sie.methods.registry import (
    METHODS,
    MethodSpec,
    build_method,
    list_methods,
    register_method,
    validate_method_config,
    views_per_sample,
)

__all__ = [
    "METHODS",
    "Method",
    "MethodOutput",
    "MethodSpec",
    "ParamGroup",
    "StepProgress",
    "build_method",
    "list_methods",
    "register_method",
    "validate_method_config",
    "views_per_sample",
]

log = logging.getLogger(__name__)

_INFRASTRUCTURE = frozenset({"base", "registry"})


def _import_builtin_methods() -> None:
    # SIE first (the method this library is named after), then alphabetical: the order of `sie methods`.
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "sie", m.name)):
        if module.name.startswith("_") or module.name in _INFRASTRUCTURE:
            continue
        importlib.import_module(f"{__name__}.{module.name}")


def _import_plugin_methods() -> None:
    for entry in entry_points(group="sie.methods"):
        try:
            entry.load()
        except Exception as exc:  # one broken plug-in must not take the built-in methods down
            log.warning("method plug-in %s (%s) failed to load: %s", entry.name, entry.value, exc)


_import_builtin_methods()
_import_plugin_methods()
