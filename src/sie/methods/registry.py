"""The method registry: how a method plugs in (DESIGN.md contract 4; tutorial in docs/methods.md).

A method module registers each name it provides with :func:`register_method`, declaring everything the
rest of the library needs to know about it without importing its internals:

* ``description``: one line for ``sie methods``;
* ``terms``: the names of the unweighted loss terms its ``forward`` logs (checked by the registry test);
* ``views``: how many views of one object a training sample holds (2 = pairs; a sequence method may
  compute it from its config section);
* ``section``: a frozen dataclass of its own settings, read as ``model.<section_name>.*`` (validated,
  listed by ``sie config keys``, refused for other methods);
* ``keys``: the shared ``model.*`` keys worth showing next to it; ``reference``: what it reproduces;
* ``requires_transform``: the ``(data.transform, parameter count)`` it needs, if any.

Modules of :mod:`sie.methods` are discovered (every public module of the package is imported), and so
are installed packages that name a module in the entry-point group ``sie.methods``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sie.config import Config, register_method_section, settle_method_sections
from sie.errors import ConfigError

if TYPE_CHECKING:
    from sie.methods.base import Method

__all__ = [
    "METHODS",
    "MethodSpec",
    "build_method",
    "list_methods",
    "register_method",
    "validate_method_config",
    "views_per_sample",
]

Builder = Callable[[Config, int], "Method"]
B = TypeVar("B", bound=Callable[..., "Method"])


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        name: registry name (``model.method``), lower case.
        description: one line for ``sie methods``.
        build: ``(cfg, transform_dim) -> Method``.
        terms: names of the loss terms ``forward`` returns in ``MethodOutput.terms``.
        reference: the published code or class it reproduces.
        keys: shared ``model.*`` keys that matter most for it (shown by ``sie methods``).
        views: views per training sample, or a function of the config giving it.
        views_key: the setting that decides ``views`` when it is a function (quoted in messages).
        section: its typed config section class (``model.<section_name>.*``), or None.
        section_name: the section's key under ``model``.
        requires_transform: ``(data.transform, transform_dim)`` it needs, or None for any.
    """

    name: str
    description: str
    build: Builder
    terms: tuple[str, ...]
    reference: str = ""
    keys: tuple[str, ...] = ()
    views: int | Callable[[Config], int] = 2
    views_key: str = ""
    section: type | None = None
    section_name: str = ""
    requires_transform: tuple[str, int] | None = None

    @property
    def views_origin(self) -> str:
        """Why a sample holds that many views, for messages: ``pairs`` or the deciding setting."""
        return self.views_key or ("pairs" if self.views == 2 else f"{self.views} views")

    def views_per_sample(self, cfg: Config) -> int:
        """The number of views of one object this method trains on under ``cfg``."""
        return self.views(cfg) if callable(self.views) else self.views


METHODS: dict[str, MethodSpec] = {}
"""Every registered method by name, in registration order."""


def register_method(
    name: str,
    *,
    description: str,
    terms: tuple[str, ...],
    reference: str = "",
    keys: tuple[str, ...] = (),
    views: int | Callable[[Config], int] = 2,
    views_key: str = "",
    section: type | None = None,
    section_name: str = "",
    requires_transform: tuple[str, int] | None = None,
) -> Callable[[B], B]:
    """Register a method; use on its class, or call the result on a builder for a named variant.

    ``@register_method("byol", description=..., terms=("loss/byol",), section=BYOLConfig)`` on a
    :class:`~sie.methods.base.Method` subclass registers the class itself as the builder;
    ``register_method("sie-novar", ...)(functools.partial(SIE, predictor_variance=False))`` registers a
    variant of an existing class under its own name. ``section_name`` defaults to the method name with
    ``-`` replaced by ``_``. Registering a name twice with another builder is an error.
    """
    if name != name.lower() or not name or any(c.isspace() for c in name):
        raise ValueError(f"method name {name!r} must be a non-empty lower-case word")
    if not description or "\n" in description:
        raise ValueError(f"method {name!r} needs a one-line description")
    if not terms or not all(t.startswith("loss/") for t in terms):
        raise ValueError(f"method {name!r}: terms must be non-empty names 'loss/...', got {terms!r}")

    def register(build: B) -> B:
        section_key = section_name or name.replace("-", "_")
        spec = MethodSpec(
            name=name,
            description=description,
            build=build,
            terms=tuple(terms),
            reference=reference,
            keys=tuple(keys),
            views=views,
            views_key=views_key,
            section=section,
            section_name=section_key if section is not None else "",
            requires_transform=requires_transform,
        )
        known = METHODS.get(name)
        if known is not None and known != spec:
            raise ValueError(f"method {name!r} is already registered (by {known.build!r})")
        if section is not None:
            register_method_section(section_key, section, name)
        METHODS[name] = spec
        return build

    return register


def list_methods() -> list[tuple[str, str]]:
    """``[(name, one-line description)]`` of every registered method, in registry order."""
    return [(name, spec.description) for name, spec in METHODS.items()]


def _expected_transform_dims(kind: str) -> tuple[int, ...]:
    from sie.data.targets import transform_dim

    return tuple(sorted({transform_dim(kind, 7), transform_dim(kind, 10)}))


def _spec(cfg: Config) -> MethodSpec:
    name = cfg.model.method
    if name not in METHODS:
        close = difflib.get_close_matches(name, list(METHODS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"model.method={name!r} is not a registered method{hint}; see `sie methods`")
    return METHODS[name]


def views_per_sample(cfg: Config) -> int:
    """Views of one object per training sample: the method's count (``data.views_per_sample`` must be 0
    or equal to it)."""
    spec = _spec(cfg)
    needed = spec.views_per_sample(cfg)
    given = cfg.data.views_per_sample
    if given not in (0, needed):
        raise ConfigError(
            f"data.views_per_sample={given}: model.method={spec.name!r} trains on {needed} views per sample "
            f"({spec.views_origin}); leave data.views_per_sample at 0 or set it to {needed}"
        )
    return needed


def validate_method_config(cfg: Config, transform_dim: int) -> MethodSpec:
    """Refuse a method/config/data combination that cannot work; return the method's spec.

    Checks the method name, that ``transform_dim`` fits ``data.transform`` (with or without translation
    latents), the transform a method needs, and the views per sample. Dimension checks of the heads
    happen when the method is built (still before any data is read).
    """
    spec = _spec(cfg)
    settle_method_sections(cfg, "config")
    kind = cfg.data.transform
    expected = _expected_transform_dims(kind)
    if transform_dim not in expected:
        raise ConfigError(
            f"transform_dim={transform_dim} does not match data.transform={kind!r}, which gives "
            f"{' or '.join(map(str, expected))} parameters per pair"
        )
    if spec.requires_transform is not None and (kind, transform_dim) != spec.requires_transform:
        needed_kind, needed_dim = spec.requires_transform
        raise ConfigError(
            f"model.method={spec.name!r} needs data.transform={needed_kind!r} with transform_dim={needed_dim} "
            f"(got data.transform={kind!r}, transform_dim={transform_dim})"
        )
    views_per_sample(cfg)
    return spec


def build_method(cfg: Config, transform_dim: int) -> Method:
    """Build ``cfg.model.method`` for data with ``transform_dim`` parameters per pair (weights random).

    Raises:
        ConfigError: unknown method, or dimensions/transform kinds that do not fit, naming the keys.
    """
    spec = validate_method_config(cfg, transform_dim)
    method = spec.build(cfg, transform_dim)
    method.name = spec.name
    method.views_per_sample = spec.views_per_sample(cfg)
    return method
