"""The method zoo: every pre-training method of the SIE reference, plus a supervised baseline.

``METHODS`` maps each registry name to a :class:`MethodSpec`; :func:`build_method` builds one from a
config. Variants that are orthogonal to the method (MLP vs hypernetwork predictor, deep hypernetwork,
generated biases, rotation vs rotation + colour parameters) are config fields, not names:
``model.predictor_type``, ``model.hypernetwork``, ``model.bias_pred``, ``data.transform``, ...
See docs/methods.md for every loss and the reference class each name reproduces.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from sie.config import Config
from sie.errors import ConfigError
from sie.methods.base import Method, MethodOutput
from sie.methods.equimod import EquiMod
from sie.methods.sie import SIE
from sie.methods.simclr import SimCLR, SimCLROnlyEqui
from sie.methods.supervised import Supervised
from sie.methods.vicreg import VICReg

__all__ = [
    "METHODS",
    "Method",
    "MethodOutput",
    "MethodSpec",
    "build_method",
    "list_methods",
    "validate_method_config",
]

_VICREG_KEYS = ("model.mlp", "model.sim_coeff", "model.std_coeff", "model.cov_coeff")
_PREDICTOR_KEYS = ("model.predictor_type", "model.hypernetwork")


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        description: one line for ``sie methods``.
        build: ``(cfg, transform_dim) -> Method``.
        reference: the reference class(es) (facebookresearch/SIE ``--experience``) it reproduces.
        keys: the config keys that matter most for it (shown by ``sie methods``).
        requires_transform: ``(data.transform, transform_dim)`` the method needs, or None for any.
    """

    description: str
    build: Callable[[Config, int], Method]
    reference: str
    keys: tuple[str, ...]
    requires_transform: tuple[str, int] | None = None


METHODS: dict[str, MethodSpec] = {
    "sie": MethodSpec(
        "SIE: split invariant/equivariant representation, hypernetwork predictor, predictor variance",
        lambda cfg, p: SIE(cfg, p),
        "SIE (SIERotColor with data.transform=rotcolor)",
        ("model.equi", *_VICREG_KEYS, "model.equi_factor", *_PREDICTOR_KEYS),
    ),
    "sie-novar": MethodSpec(
        "SIE without the predictor-output variance term",
        lambda cfg, p: SIE(cfg, p, predictor_variance=False),
        "SIENoVar",
        ("model.equi", *_VICREG_KEYS, "model.equi_factor", *_PREDICTOR_KEYS),
    ),
    "sie-onlyequi": MethodSpec(
        "SIE with no invariant part: the whole representation is equivariant",
        lambda cfg, p: SIE(cfg, p, only_equi=True),
        "SIEOnlyEqui",
        (*_VICREG_KEYS, *_PREDICTOR_KEYS),
    ),
    "sie-rotcolor": MethodSpec(
        "SIE conditioned on rotation + floor/spot hue deltas (needs data.transform=rotcolor)",
        lambda cfg, p: SIE(cfg, p),
        "SIERotColor",
        ("model.equi", *_VICREG_KEYS, "model.equi_factor", *_PREDICTOR_KEYS),
        requires_transform=("rotcolor", 6),
    ),
    "vicreg": MethodSpec(
        "VICReg: invariance + variance + covariance on one projector",
        lambda cfg, p: VICReg(cfg, p),
        "VICReg",
        _VICREG_KEYS,
    ),
    "vicreg-partinv": MethodSpec(
        "VICReg with invariance on the first D - equi embedding dims only",
        lambda cfg, p: VICReg(cfg, p, partial_invariance=True),
        "VICRegPartInv",
        ("model.equi", *_VICREG_KEYS),
    ),
    "simclr": MethodSpec(
        "SimCLR: NT-Xent between the two views' embeddings",
        lambda cfg, p: SimCLR(cfg, p),
        "SimCLR",
        ("model.mlp", "model.simclr_temp"),
    ),
    "augself": MethodSpec(
        "SimCLR + AugSelf: also regress the transformation from both representations",
        lambda cfg, p: SimCLR(cfg, p, augself=True),
        "SimCLRAugSelf (SimCLRAugSelfRotColor with data.transform=rotcolor)",
        ("model.mlp", "model.simclr_temp", "model.ec_weight", "model.augself_mlp"),
    ),
    "simclr-onlyequi": MethodSpec(
        "SimCLR whose positive is the prediction from the other view (equivariant only)",
        lambda cfg, p: SimCLROnlyEqui(cfg, p),
        "SimCLROnlyEqui (SimCLROnlyEquiRotColor with data.transform=rotcolor)",
        ("model.mlp", "model.simclr_temp", *_PREDICTOR_KEYS),
    ),
    "equimod": MethodSpec(
        "EquiMod on SimCLR: invariant NT-Xent + equi_factor x predicted-view NT-Xent",
        lambda cfg, p: EquiMod(cfg, p, base="simclr"),
        "SimCLREquiMod (SimCLREquiModRotColor with data.transform=rotcolor)",
        ("model.mlp", "model.simclr_temp", "model.equi_factor", *_PREDICTOR_KEYS),
    ),
    "equimod-vicreg": MethodSpec(
        "EquiMod on VICReg: VICReg on invariant head + equi_factor x VICReg with prediction",
        lambda cfg, p: EquiMod(cfg, p, base="vicreg"),
        "VICRegEquiMod",
        (*_VICREG_KEYS, "model.equi_factor", *_PREDICTOR_KEYS),
    ),
    "supervised": MethodSpec(
        "Supervised baseline: cross-entropy on class labels, linear head on the backbone",
        lambda cfg, p: Supervised(cfg, p),
        "(not in the reference repository)",
        ("model.num_classes",),
    ),
}


def list_methods() -> list[tuple[str, str]]:
    """``[(name, one-line description)]`` of every registered method, in registry order."""
    return [(name, spec.description) for name, spec in METHODS.items()]


def _expected_transform_dims(kind: str) -> tuple[int, ...]:
    from sie.data.targets import transform_dim

    return tuple(sorted({transform_dim(kind, 7), transform_dim(kind, 10)}))


def validate_method_config(cfg: Config, transform_dim: int) -> MethodSpec:
    """Refuse a method/config/data combination that cannot work; return the method's spec.

    Checks the method name, that ``transform_dim`` fits ``data.transform`` (with or without translation
    latents), the transform a method needs, and pairs of views. Dimension checks of the heads happen
    when the method is built (still before any data is read).
    """
    name = cfg.model.method
    if name not in METHODS:
        close = difflib.get_close_matches(name, list(METHODS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"model.method={name!r} is not a registered method{hint}; see `sie methods`")
    spec = METHODS[name]
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
            f"model.method={name!r} needs data.transform={needed_kind!r} with transform_dim={needed_dim} "
            f"(got data.transform={kind!r}, transform_dim={transform_dim})"
        )
    if cfg.data.views_per_sample != 2:
        raise ConfigError(
            f"model.method={name!r} trains on pairs of views; data.views_per_sample={cfg.data.views_per_sample} "
            "must be 2"
        )
    return spec


def build_method(cfg: Config, transform_dim: int) -> Method:
    """Build ``cfg.model.method`` for data with ``transform_dim`` parameters per pair (weights random).

    Raises:
        ConfigError: unknown method, or dimensions/transform kinds that do not fit, naming the keys.
    """
    spec = validate_method_config(cfg, transform_dim)
    method = spec.build(cfg, transform_dim)
    method.name = cfg.model.method
    return method
