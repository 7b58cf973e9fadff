"""Typed, frozen, nested configuration; YAML files and ``KEY=VALUE`` overrides; named presets.

A :class:`Config` has one section per stage: ``data``, ``model`` (method and heads), ``optim``,
``train``, ``eval`` and ``render``. Field defaults are the reference SIE configuration
(facebookresearch/SIE README command, see docs/config.md), so ``Config()`` *is* the ``paper``
preset. A resolved config is built in this order, later sources winning:

    preset -> ``--config FILE.yaml`` (a partial or complete mapping) -> ``--set a.b=VALUE`` -> named flags

Unknown keys, wrong types and impossible combinations raise :class:`~sie.errors.ConfigError` with
one line that names the key, the source (file or flag) and, for typos, the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sie.errors import ConfigError

__all__ = [
    "ALL_SECTIONS",
    "PRESETS",
    "TRAIN_SECTIONS",
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "RenderConfig",
    "TrainConfig",
    "apply_overrides",
    "backbone_dim",
    "config_diff",
    "config_from_dict",
    "config_keys",
    "config_to_dict",
    "get_preset",
    "load_config_file",
    "method_section_owners",
    "method_section_types",
    "parse_mlp_spec",
    "register_method_section",
    "resolve_config",
    "save_config",
    "settle_method_sections",
]

CONFIG_FILENAME = "config.yaml"


def param(default: Any, help: str, unit: str | None = None) -> Any:
    """A dataclass field with a help text (and unit) shown by ``sie config keys`` and ``--help``."""
    return field(default=default, metadata={"help": help, "unit": unit})


# ---------------------------------------------------------------------------------------------------
# Sections. Defaults = the reference configuration (README command of facebookresearch/SIE).
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Where the views come from and how a training sample is formed."""

    root: str = param("", "dataset directory in the 3DIEBench layout, or a packed store")
    resolution: int = param(256, "side of the square input images fed to the backbone", "px")
    transform: Literal["quat", "euler", "rotcolor", "all"] = param(
        "quat",
        "transformation parameters between two views: quaternion of R_a^-1 R_b (4), Euler xyz (3), "
        "quaternion + floor/spot hue deltas (6), or quaternion + all non-rotation latent deltas",
    )
    canonical_quaternion: bool = param(
        False, "flip relative quaternions to w >= 0 (the reference does not; changes the learning problem)"
    )
    views_per_sample: int = param(
        0, "distinct views drawn per object per sample; 0 = as many as the method consumes (2 for pairs)"
    )
    num_workers: int = param(8, "data-loader worker processes per rank")
    skip_bad: bool = param(False, "exclude objects with missing/corrupt files (reported) instead of failing")


@dataclass(frozen=True)
class ModelConfig:
    """The method, its backbone and heads, and its loss coefficients (reference flag names)."""

    method: str = param("sie", "registered method name (see `sie methods`)")
    arch: Literal["resnet18", "torchvision_resnet18", "convnet"] = param(
        "resnet18",
        "backbone: the reference's ResNet-18 variant, torchvision's resnet18, or a plain 7-layer CNN for "
        "32 px CPU runs (docs/methods.md)",
    )
    small_stem: bool = param(False, "3x3 stride-1 stem without max-pool, for 32-64 px inputs (ResNets)")
    width: int = param(
        0,
        "channels of the backbone's first stage, 8x that in the representation; 0 = the arch's default "
        "(64 for the ResNets = the reference, 32 for convnet)",
        "channels",
    )
    equi: int = param(
        256, "representation dims in the equivariant part (the last ones; 512 in all for ResNet-18)", "dims"
    )
    mlp: str = param("2048-2048-2048", "projector widths, split between parts in proportion to `equi`")
    predictor_type: Literal["hypernetwork", "mlp"] = param("hypernetwork", "predictor family")
    hypernetwork: Literal["linear", "deep"] = param(
        "linear", "hypernetwork: one linear map, or a 3-layer MLP"
    )
    predictor: str = param("", "hidden widths of the generated network, e.g. '512' ('' = one d x d layer)")
    predictor_relu: bool = param(False, "ReLU between the generated network's layers")
    bias_pred: bool = param(False, "the hypernetwork also generates biases")
    bias_hypernet: bool = param(False, "bias in the hypernetwork itself")
    tf_num_layers: int = param(1, "number of linear layers of the MLP predictor")
    sim_coeff: float = param(10.0, "invariance (and prediction) MSE coefficient")
    std_coeff: float = param(10.0, "variance hinge coefficient")
    cov_coeff: float = param(1.0, "covariance coefficient")
    equi_factor: float = param(0.45, "weight of the equivariance term relative to sim_coeff")
    ec_weight: float = param(1.0, "AugSelf regression weight")
    simclr_temp: float = param(0.1, "InfoNCE temperature")
    augself_mlp: str = param("1024-1024", "hidden widths of the AugSelf regressor on [h_a, h_b]")
    num_classes: int = param(55, "classes of the supervised baseline's linear head (must cover every label)")
    hypernetwork_init_gain: float = param(
        0.0,
        "0 = PyTorch's default init of the hypernetwork, as the reference (a generated d x d layer then "
        "scales a random vector by about 0.29 sqrt(d), 6.5 at d = 512); > 0 = rescale it so each "
        "generated layer has about this gain (docs/methods.md)",
    )
    hypernetwork_impl: Literal["factorized", "materialized"] = param(
        "factorized",
        "how the hypernetwork is applied: sum_k c_k (A_k z) without per-sample weights (same result, "
        "much faster), or the reference's materialised (N, d, d) weights",
    )
    cov_denominator: Literal["batch_size", "gathered"] = param(
        "batch_size",
        "covariance normaliser: train.batch_size - 1 as the reference, or the gathered N - 1",
    )
    equi_factor_everywhere: bool = param(
        False,
        "also weight the equivariance term by equi_factor in sie-onlyequi and in equimod with rotcolor "
        "(the reference ignores it there)",
    )
    sections: tuple[tuple[str, Any], ...] = field(default=(), metadata={"sections": True})
    """The methods' own typed sections given so far, ``((name, section), ...)`` sorted by name; read one
    with :meth:`section`. In files and ``--set`` they are ``model.<name>.<key>`` (e.g. ``model.byol.ema``)."""

    def section(self, name: str) -> Any:
        """The typed config section ``model.<name>.*`` of a method plug-in (its defaults if not given)."""
        for given, value in self.sections:
            if given == name:
                return value
        types_ = method_section_types()
        if name not in types_:
            raise ConfigError(f"model.{name}: no method registers a config section of that name")
        return types_[name]()


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule (the reference: Adam, constant lr, coupled weight decay)."""

    optimizer: Literal["adam", "adamw", "sgd"] = param("adam", "optimiser")
    lr: float = param(1e-3, "base learning rate")
    weight_decay: float = param(1e-6, "weight decay (coupled L2 for adam, as the reference)")
    schedule: Literal["constant", "cosine"] = param("constant", "learning-rate schedule after warm-up")
    warmup_epochs: float = param(0.0, "linear warm-up length", "epochs")
    exclude_bias_and_norm: bool = param(False, "no weight decay on biases and norm layers")
    final_lr: float = param(0.0, "learning rate the cosine schedule decays to")
    momentum: float = param(0.9, "momentum of sgd (unused by adam/adamw)")


@dataclass(frozen=True)
class TrainConfig:
    """The training engine."""

    epochs: int = param(2000, "training epochs (one pair per training object per epoch)")
    batch_size: int = param(1024, "global batch size, summed over all ranks", "pairs")
    device: Literal["auto", "cpu", "cuda"] = param("auto", "device; auto = cuda when available")
    precision: Literal["fp32", "bf16", "fp16"] = param(
        "fp16", "autocast precision (the reference uses fp16 AMP); losses are computed in fp32"
    )
    channels_last: bool = param(False, "channels_last memory format for the backbone")
    compile: bool = param(False, "torch.compile the backbone (about 25 s per process; no gain on CPU)")
    sync_bn: bool = param(True, "SyncBatchNorm when running distributed")
    seed: int = param(0, "global seed (weights, view sampling)")
    log_every_s: float = param(30.0, "seconds between metrics.jsonl records", "s")
    checkpoint_every_min: float = param(10.0, "minutes between checkpoints (also at each epoch end)", "min")
    checkpoint_every_epochs: int = param(
        1,
        "also checkpoint at the end of every N-th epoch (and the last); > 1 for tiny datasets whose epochs "
        "last a few steps",
        "epochs",
    )
    online_eval: bool = param(True, "train the detached online probes of the reference")
    online_eval_every: int = param(1, "run the online probes every N steps", "steps")
    drop_last: bool = param(
        True,
        "drop each epoch's last partial batch (the reference keeps it, but normalises its covariance by the "
        "full train.batch_size; false reproduces that)",
    )
    deterministic: bool = param(
        False, "deterministic kernels (slower); with fp32 on CPU a resumed run repeats the uninterrupted one"
    )
    tensorboard: bool = param(
        False, "also write TensorBoard scalars to RUN/tensorboard (needs sie[tensorboard])"
    )


@dataclass(frozen=True)
class EvalConfig:
    """The offline evaluation protocol (frozen backbone, probes on cached features)."""

    probe_epochs: int = param(300, "probe training epochs")
    probe_batch_size: int = param(256, "probe batch size")
    probe_lr: float = param(1e-3, "probe learning rate (Adam, constant)")
    probe_weight_decay: float = param(0.0, "probe weight decay")
    probe_hidden: str = param("1024-1024", "hidden widths of the rotation/colour regression MLP")
    probe_seeds: tuple[int, ...] = param((0,), "probe seeds; several give mean +- std")
    reference_bn: bool = param(
        False, "reproduce the reference's frozen-backbone BatchNorm in train mode during probe training"
    )
    feature_batch_size: int = param(256, "batch size of the one-off feature extraction")
    tasks: tuple[str, ...] = param(
        (
            "classification",
            "rotation",
            "colour",
            "translation",
            "translation_base",
            "absolute_rotation",
            "retrieval",
            "rank",
        ),
        "protocol parts to run (translation and translation_base only on -T datasets, retrieval only with a predictor; rank = "
        "RankMe effective rank of the val features)",
    )
    ood_split: str = param(
        "",
        "out-of-distribution rotation R²: a split NAME of the dataset root, or another dataset DIR (its val)",
    )
    device: Literal["auto", "cpu", "cuda"] = param(
        "auto", "device of feature extraction, probes and retrieval"
    )
    figures: bool = param(True, "store the arrays that `sie report` draws (panels, orbits, preview)")
    orbit_data: str = param(
        "", "dataset DIR with an `orbit` split (rendered orbit sweeps) for the latent-steering figure"
    )


@dataclass(frozen=True)
class RenderConfig:
    """The offline benchmark generator (3DIEBench scene)."""

    source: str = param("procedural", "object source: procedural | shapenet:DIR | modelnet:DIR | folder:DIR")
    classes: int = param(55, "number of classes")
    objects_per_class: int = param(954, "objects per class (3DIEBench averages 954)")
    views: int = param(50, "views per object")
    size: int = param(256, "image side", "px")
    variant: Literal["base", "T", "OOD"] = param(
        "base", "base, translated (-T) or out-of-distribution rotations"
    )
    samples_per_pixel: int = param(4, "anti-aliasing rays per pixel")
    backend: str = param("auto", "render backend: auto | warp | embree (auto: warp if installed)")
    val_fraction: float = param(0.2, "fraction of each class's objects in the val split")
    seed: int = param(0, "generator seed; images depend only on it, not on workers or shards")
    workers: int = param(0, "render processes (0 = all cores)")
    class_sizes: Literal["uniform", "3diebench"] = param(
        "uniform",
        "objects per class: uniform = objects_per_class each (capped by what a mesh source has); 3diebench = "
        "3DIEBench's exact per-class train/val counts for procedural classes, every object for mesh sources",
    )
    antialias: Literal["adaptive", "full"] = param(
        "adaptive", "supersample only pixels on edges/shadow borders (adaptive) or every pixel (full)"
    )
    device: str = param("auto", "render device: auto | cpu | cuda | cuda:N (auto = cuda when present)")
    jpeg_quality: int = param(95, "JPEG quality of the written views (the reference's cv2 default is 95)")
    swap_red_blue: bool = param(
        False, "write JPEGs with red and blue swapped, as the reference's cv2.imwrite of RGB data did"
    )
    mesh_up_axis: Literal["auto", "y", "z"] = param(
        "auto", "up axis of folder:DIR meshes (auto: y for obj/glb/gltf, z for off/ply/stl)"
    )
    require_watertight: bool = param(False, "treat non-watertight meshes as bad input (default: count them)")
    skip_bad: bool = param(
        False, "skip unreadable/degenerate objects and unusable classes (listed in dataset.json)"
    )
    rotation_range: tuple[float, ...] = param(
        (-1.5707963267948966, 1.5707963267948966), "range of each Euler angle (3DIEBench: -pi/2, pi/2)", "rad"
    )
    ood_rotation_range: tuple[float, ...] = param(
        (1.5707963267948966, 3.141592653589793),
        "angle magnitude range of the OOD variant (random sign)",
        "rad",
    )
    floor_hue_range: tuple[float, ...] = param((0.0, 1.0), "floor hue range")
    spot_theta_range: tuple[float, ...] = param((0.0, 0.7853981633974483), "spot polar angle range", "rad")
    spot_phi_range: tuple[float, ...] = param((0.0, 6.283185307179586), "spot azimuth range", "rad")
    spot_hue_range: tuple[float, ...] = param((0.0, 1.0), "spot hue range")
    translation_range: tuple[float, ...] = param((-0.5, 0.5), "translation range of the T variant, per axis")
    field_of_view: float = param(
        0.691111,
        "camera field of view (3DIEBench: BlenderProc's 0.691111 = Blender's 50 mm lens); smaller zooms in "
        "on the object without moving the camera",
        "rad",
    )
    orbit_factor: str = param(
        "",
        "orbit sweep: vary only this factor (rot_x ... trans_z) over an even grid of `views` steps; '' = off",
    )


@dataclass(frozen=True)
class Config:
    """Everything a stage needs. ``Config()`` is the reference (``paper``) configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    render: RenderConfig = field(default_factory=RenderConfig)


# ---------------------------------------------------------------------------------------------------
# Method plug-in sections (DESIGN.md contract 4): ``model.<section>.*``, registered by the methods
# ---------------------------------------------------------------------------------------------------

_METHOD_SECTIONS: dict[str, type] = {}
_SECTION_OWNERS: dict[str, list[str]] = {}
_RESERVED_SECTION_NAMES = frozenset(f.name for f in dataclasses.fields(ModelConfig))


def register_method_section(name: str, cls: type, owner: str) -> None:
    """Declare that method ``owner`` reads the frozen dataclass ``cls`` as ``model.<name>.*``.

    Several methods may share a section (e.g. BYOL and Conditional BYOL); a name keeps one class.
    Called by :func:`sie.methods.register_method`; a plug-in never needs to call it itself.
    """
    if not name.isidentifier() or name in _RESERVED_SECTION_NAMES:
        raise ValueError(f"method section name {name!r} must be an identifier and not a model.* key")
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"the config section of method {owner!r} must be a dataclass, got {cls!r}")
    if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"the config section {cls.__name__} of method {owner!r} must be frozen")
    known = _METHOD_SECTIONS.setdefault(name, cls)
    if known is not cls:
        raise ValueError(
            f"model.{name}.* is already {known.__name__}; method {owner!r} cannot register {cls.__name__}"
        )
    owners = _SECTION_OWNERS.setdefault(name, [])
    if owner not in owners:
        owners.append(owner)


def _discover_method_plugins() -> None:
    # The sections live with the methods, above this module; importing the package registers the
    # built-in methods and those of installed plug-ins (entry-point group ``sie.methods``).
    import importlib

    importlib.import_module("sie.methods")


def method_section_types() -> dict[str, type]:
    """``{section name: dataclass}`` of every registered method section."""
    _discover_method_plugins()
    return dict(_METHOD_SECTIONS)


def method_section_owners(name: str) -> tuple[str, ...]:
    """The methods that read ``model.<name>.*`` (empty if no method registers it)."""
    _discover_method_plugins()
    return tuple(_SECTION_OWNERS.get(name, ()))


# ---------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------

PAPER = Config()
"""The README command of facebookresearch/SIE, flag for flag (see docs/config.md for the mapping)."""

CPU_SMALL = Config(
    data=DataConfig(resolution=64, num_workers=2),
    model=ModelConfig(mlp="1024-1024-1024"),
    train=TrainConfig(
        epochs=20, batch_size=64, device="cpu", precision="bf16", channels_last=True, log_every_s=10.0
    ),
    eval=EvalConfig(probe_epochs=20, probe_hidden="256-256", feature_batch_size=128),
    render=RenderConfig(
        classes=10, objects_per_class=20, views=10, size=64, samples_per_pixel=2, field_of_view=0.42
    ),
)
"""A laptop-CPU configuration: 64 px with the standard stem (a stride-1 stem at 64 px costs ~16x the
compute), narrower projector, bf16 + channels_last, short runs. Its rendered benchmarks zoom the
3DIEBench camera (field of view 0.42 rad instead of 0.691) so objects span ~35 px of the 64 instead of
~21 px."""

CPU = Config(
    data=DataConfig(resolution=32, num_workers=0),
    model=ModelConfig(arch="convnet", equi=128, mlp="1024-1024-1024", hypernetwork_init_gain=1.0),
    train=TrainConfig(
        epochs=150,
        batch_size=128,
        device="cpu",
        precision="bf16",
        channels_last=True,
        log_every_s=10.0,
        checkpoint_every_min=2.0,
        checkpoint_every_epochs=50,
    ),
    eval=EvalConfig(probe_epochs=300, probe_hidden="256-256", feature_batch_size=256),
    render=RenderConfig(
        classes=10, objects_per_class=100, views=20, size=32, samples_per_pixel=2, field_of_view=0.42
    ),
)
"""Minutes-scale CPU configuration: the ``mini`` benchmark (10 classes x 100 objects x 20 views at 32 px,
zoomed camera) and the ``convnet`` backbone (1.2M parameters, 256-d: 128 invariant + 128 equivariant),
batch 128, bf16 + channels_last, 900 steps (about 5 minutes on 2 cores). One documented deviation from the
reference is on: ``model.hypernetwork_init_gain=1`` (the hypernetwork's generated layer starts at unit gain
instead of ~6.5: with the reference init SIE learns nothing measurable in its first 3 minutes here; docs/results.md).
The backbone was chosen by measurement: benchmarks/README.md."""

PRESETS: dict[str, Config] = {"paper": PAPER, "cpu-small": CPU_SMALL, "cpu": CPU}


def get_preset(name: str) -> Config:
    """Return the named preset; unknown names raise a ConfigError listing the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}{_suggest(name, PRESETS)}"
        ) from None


# ---------------------------------------------------------------------------------------------------
# Dict <-> dataclass with strict, explained type checking
# ---------------------------------------------------------------------------------------------------


def _suggest(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class ConfigKey:
    """One leaf of the config tree: dotted name, annotation, default, help text and unit."""

    name: str
    type: Any
    default: Any
    help: str
    unit: str | None


def config_keys(cls: type = Config, prefix: str = "") -> list[ConfigKey]:
    """All leaf keys of a config class, depth first, in declaration order."""
    out: list[ConfigKey] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if f.metadata.get("sections"):
            for name, section in sorted(method_section_types().items()):
                out.extend(config_keys(section, f"{prefix}{name}."))
        elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out.extend(config_keys(tp, key + "."))
        else:
            out.append(ConfigKey(key, tp, f.default, f.metadata.get("help", ""), f.metadata.get("unit")))
    return out


def _all_dotted_keys() -> list[str]:
    return [f.name for f in config_keys(Config)]


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int->float, list->tuple)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{source}: {key} must be {_type_name(tp)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{source}: {key} must be one of {', '.join(map(repr, choices))}, got {value!r}"
                f"{_suggest(str(value), map(str, choices))}"
            )
        return value
    if origin is tuple:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad
        (item_type, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, item_type, key, source) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
            raise bad
        return str(value)
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def config_from_dict(data: Mapping[str, Any], *, source: str = "config", cls: type = Config) -> Any:
    """Build a (nested) config dataclass from a mapping; every key must exist and every type fit.

    Missing keys take the class defaults. ``source`` (a file name or flag) is quoted in errors.
    """
    return _build(cls, data, prefix="", source=source)


def _build(cls: type, data: Mapping[str, Any], prefix: str, source: str) -> Any:
    if not isinstance(data, Mapping):
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{source}: {where} must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields_ = dataclasses.fields(cls)
    names = {f.name for f in fields_ if not f.metadata.get("sections")}
    section_field = next((f.name for f in fields_ if f.metadata.get("sections")), None)
    kwargs: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in names:
            section_types = method_section_types() if section_field is not None else {}
            if name in section_types:
                sections[name] = _build(section_types[name], value, f"{key}.", source)
                continue
            valid = [f"{prefix}{n}" for n in names] + _all_dotted_keys()
            raise ConfigError(f"{source}: unknown key {key!r}{_suggest(str(key), valid)}")
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{key}.", source)
        else:
            kwargs[name] = _coerce(value, tp, key, source)
    if section_field is not None and sections:
        kwargs[section_field] = tuple(sorted(sections.items()))
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a method section checking its values in __post_init__
        raise ConfigError(f"{source}: {exc}") from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples become lists, so it dumps to YAML/JSON)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("sections"):
            out.update((name, config_to_dict(section)) for name, section in value)
        elif dataclasses.is_dataclass(value):
            out[f.name] = config_to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The mapping of sections in a YAML config file; a missing file or bad YAML is one line naming it."""
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"--config {path}: not valid YAML{where}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"--config {path}: expected a mapping of sections, got {type(loaded).__name__}")
    return dict(loaded)


def load_config_file(path: str | Path, base: Config = PAPER) -> Config:
    """Read a YAML config (partial or complete) and lay it over ``base``."""
    path = Path(path)
    cfg: Config = config_from_dict(_merge(config_to_dict(base), _read_yaml_mapping(path)), source=str(path))
    return cfg


_OVERRIDE = re.compile(r"^(?P<key>[A-Za-z_][\w.]*)=(?P<value>.*)$", re.S)


def apply_overrides(cfg: Config, overrides: Sequence[str], *, source: str = "--set") -> Config:
    """Apply ``a.b=VALUE`` strings; values are parsed as YAML scalars (``true``, ``3``, ``1e-3``, ``[0,1]``)."""
    updates: dict[str, Any] = {}
    valid = _all_dotted_keys()
    for item in overrides:
        match = _OVERRIDE.match(item)
        if not match:
            raise ConfigError(f"{source} {item!r}: expected KEY=VALUE, e.g. model.sim_coeff=5")
        key, raw = match["key"], match["value"]
        if key not in valid:
            raise ConfigError(f"{source} {item!r}: unknown key {key!r}{_suggest(key, valid)}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = updates
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    merged = _merge(config_to_dict(cfg), updates)
    result: Config = config_from_dict(merged, source=source)
    return result


# ---------------------------------------------------------------------------------------------------
# Validation of combinations
# ---------------------------------------------------------------------------------------------------

BACKBONE_DEFAULT_WIDTHS: dict[str, int] = {"resnet18": 64, "torchvision_resnet18": 64, "convnet": 32}
"""Channels of a backbone's first stage when ``model.width`` is 0 (the architecture's own default)."""


def backbone_dim(arch: str, width: int = 0) -> int:
    """Representation dims of a backbone: 8 x its first-stage width (width 0 = the arch's default)."""
    if arch not in BACKBONE_DEFAULT_WIDTHS:
        raise ValueError(
            f"unknown backbone arch {arch!r}; expected one of {', '.join(BACKBONE_DEFAULT_WIDTHS)}"
        )
    return 8 * (width or BACKBONE_DEFAULT_WIDTHS[arch])


def parse_mlp_spec(spec: str, key: str = "model.mlp") -> tuple[int, ...]:
    """``"2048-2048-2048"`` -> ``(2048, 2048, 2048)``; ``""`` -> ``()``; anything else is a ConfigError."""
    if spec.strip() == "":
        return ()
    parts = spec.split("-")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"{key}={spec!r}: expected positive integers joined by '-', e.g. 2048-2048-2048")
    return tuple(int(p) for p in parts)


BACKBONE_MIN_RESOLUTION: dict[tuple[str, bool], int] = {
    ("resnet18", False): 24,
    ("resnet18", True): 6,
    ("torchvision_resnet18", False): 1,
    ("torchvision_resnet18", True): 1,
    ("convnet", False): 1,
}
"""Smallest input side (px) each backbone (arch, small_stem) can encode: the reference ResNet-18's
unpadded strided convolutions leave no pixels below it (tests/nn check the boundary)."""

_INFINITY_ALLOWED = frozenset({"train.checkpoint_every_min", "train.log_every_s"})
"""Float keys where an infinite value means "never" rather than a mistake."""


ALL_SECTIONS: tuple[str, ...] = ("model", "data", "train", "optim", "eval", "render")
"""Every section of :class:`Config`, in the order ``sie config show`` prints them."""

TRAIN_SECTIONS: tuple[str, ...] = ("model", "data", "train", "optim", "eval")
"""The sections ``sie train`` reads (the render section describes a dataset it does not render)."""


class _Origins:
    """Where each setting came from, so a refusal names the flag, file or ``--set`` item at fault.

    ``default`` labels keys no layer set (the preset or the base config); ``keys`` maps a dotted key
    to the layer that set it last.
    """

    def __init__(self, default: str, keys: Mapping[str, str] | None = None) -> None:
        self.default = default
        self.keys: dict[str, str] = dict(keys or {})

    def __call__(self, *keys: str) -> str:
        """The origin of the first of ``keys`` that a layer set, else the default."""
        return next((self.keys[k] for k in keys if k in self.keys), self.default)

    def set(self, keys: Iterable[str], origin: str) -> None:
        for key in keys:
            self.keys[key] = origin


def _leaf_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of every leaf of a nested mapping."""
    out: list[str] = []
    for name, value in data.items():
        key = f"{prefix}{name}"
        out += _leaf_keys(value, f"{key}.") if isinstance(value, Mapping) else [key]
    return out


def _check_finite(cfg: Config, at: _Origins, sections: Collection[str]) -> None:
    """Refuse NaN anywhere and infinities outside :data:`_INFINITY_ALLOWED`, naming the key."""
    flat = config_to_dict(cfg)

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for name, value in node.items():
            key = f"{prefix}{name}"
            if isinstance(value, Mapping):
                walk(value, f"{key}.")
                continue
            values = value if isinstance(value, list) else [value]
            for item in values:
                if isinstance(item, float) and (
                    item != item or (abs(item) == float("inf") and key not in _INFINITY_ALLOWED)
                ):
                    raise ConfigError(f"{at(key)}: {key}={value!r} must be a finite number")

    walk({name: flat[name] for name in sections if name in flat}, "")
    if "model" in sections:  # method sections live under model.<name>
        walk({k: v for k, v in flat.items() if k not in ALL_SECTIONS}, "model.")


def validate(
    cfg: Config,
    source: str = "config",
    *,
    sections: Collection[str] = ALL_SECTIONS,
    origins: Mapping[str, str] | None = None,
) -> Config:
    """Refuse impossible settings of ``sections`` with a message naming the key and where it was set.

    A command checks only the sections it reads (``sie render`` the render section, ``sie eval`` the
    eval section), so a setting it ignores cannot stop it. ``origins`` maps dotted keys to the flag,
    file or ``--set`` item that set them; other keys are attributed to ``source``. Returns ``cfg``
    with the active method's config sections settled (see :func:`settle_method_sections`).
    """
    unknown = set(sections) - set(ALL_SECTIONS)
    if unknown:
        raise ValueError(f"unknown config sections {sorted(unknown)}; valid: {ALL_SECTIONS}")
    at = _Origins(source, origins)
    m, d, t, o, e, r = cfg.model, cfg.data, cfg.train, cfg.optim, cfg.eval, cfg.render
    _check_finite(cfg, at, sections)
    if "model" in sections:
        if m.width < 0:
            raise ConfigError(
                f"{at('model.width')}: model.width={m.width} must be >= 0 (0 = the arch's default)"
            )
        if m.arch == "torchvision_resnet18" and m.width not in (0, 64):
            raise ConfigError(
                f"{at('model.width', 'model.arch')}: model.width={m.width}: "
                "model.arch='torchvision_resnet18' has width 64 only"
            )
        if m.arch == "convnet" and m.small_stem:
            raise ConfigError(
                f"{at('model.small_stem', 'model.arch')}: model.small_stem=true: "
                "model.arch='convnet' has no stem to replace"
            )
        repr_dim = backbone_dim(m.arch, m.width)
        if not 0 <= m.equi < repr_dim:
            raise ConfigError(
                f"{at('model.equi', 'model.arch', 'model.width')}: model.equi={m.equi} must be in "
                f"[0, {repr_dim}) for model.arch={m.arch!r}, model.width={m.width} ({repr_dim}-d "
                "representation; the invariant part needs at least one dim)"
            )
        if not parse_mlp_spec(m.mlp):
            raise ConfigError(f"{at('model.mlp')}: model.mlp must name at least one layer width")
        parse_mlp_spec(m.predictor, "model.predictor")
        if m.simclr_temp <= 0:
            raise ConfigError(f"{at('model.simclr_temp')}: model.simclr_temp={m.simclr_temp} must be > 0")
    if "eval" in sections:
        parse_mlp_spec(e.probe_hidden, "eval.probe_hidden")
        if e.probe_lr <= 0:
            raise ConfigError(f"{at('eval.probe_lr')}: eval.probe_lr={e.probe_lr} must be > 0")
        if not e.probe_seeds:
            raise ConfigError(
                f"{at('eval.probe_seeds')}: eval.probe_seeds is empty; give at least one seed, e.g. [0]"
            )
    positive_ints = {
        "data.resolution": d.resolution,
        "train.batch_size": t.batch_size,
        "model.tf_num_layers": m.tf_num_layers,
        "train.online_eval_every": t.online_eval_every,
        "train.checkpoint_every_epochs": t.checkpoint_every_epochs,
        "eval.probe_batch_size": e.probe_batch_size,
        "eval.probe_epochs": e.probe_epochs,
        "eval.feature_batch_size": e.feature_batch_size,
        "render.classes": r.classes,
        "render.objects_per_class": r.objects_per_class,
        "render.size": r.size,
        "render.samples_per_pixel": r.samples_per_pixel,
    }
    for key, value in positive_ints.items():
        if key.split(".")[0] in sections and value <= 0:
            raise ConfigError(f"{at(key)}: {key}={value} must be positive")
    non_negative: dict[str, float] = {
        "train.epochs": t.epochs,
        "train.seed": t.seed,
        "train.log_every_s": t.log_every_s,
        "train.checkpoint_every_min": t.checkpoint_every_min,
        "optim.final_lr": o.final_lr,
        "optim.momentum": o.momentum,
        "eval.probe_weight_decay": e.probe_weight_decay,
        "data.num_workers": d.num_workers,
        "render.workers": r.workers,
        "optim.weight_decay": o.weight_decay,
        "optim.warmup_epochs": o.warmup_epochs,
        "model.sim_coeff": m.sim_coeff,
        "model.std_coeff": m.std_coeff,
        "model.cov_coeff": m.cov_coeff,
        "model.equi_factor": m.equi_factor,
        "model.ec_weight": m.ec_weight,
        "model.hypernetwork_init_gain": m.hypernetwork_init_gain,
    }
    for key, number in non_negative.items():
        if key.split(".")[0] in sections and number < 0:
            raise ConfigError(f"{at(key)}: {key}={number} must be >= 0")
    if "optim" in sections:
        if o.lr <= 0:
            raise ConfigError(f"{at('optim.lr')}: optim.lr={o.lr} must be > 0")
        if o.momentum >= 1:
            raise ConfigError(f"{at('optim.momentum')}: optim.momentum={o.momentum} must be in [0, 1)")
    if "data" in sections:
        if "model" in sections:
            smallest = BACKBONE_MIN_RESOLUTION.get((m.arch, m.small_stem), 1)
            if d.resolution < smallest:
                hint = "; use model.small_stem=true or a larger resolution" if not m.small_stem else ""
                raise ConfigError(
                    f"{at('data.resolution', 'model.arch', 'model.small_stem')}: data.resolution="
                    f"{d.resolution} px is too small for model.arch={m.arch!r} with model.small_stem="
                    f"{str(m.small_stem).lower()}: it needs at least {smallest} px{hint}"
                )
        if d.views_per_sample < 2 and d.views_per_sample != 0:
            raise ConfigError(
                f"{at('data.views_per_sample')}: data.views_per_sample={d.views_per_sample} must be >= 2 "
                "(or 0 = what the method consumes)"
            )
    if "render" in sections:
        if "data" in sections and r.views < d.views_per_sample:
            raise ConfigError(
                f"{at('render.views', 'data.views_per_sample')}: render.views={r.views} is fewer than "
                f"data.views_per_sample={d.views_per_sample}"
            )
        if not 0 < r.val_fraction < 1:
            raise ConfigError(
                f"{at('render.val_fraction')}: render.val_fraction={r.val_fraction} must be in (0, 1)"
            )
        from sie.render.settings import check_render_config

        check_render_config(r, where=at)
    if "train" in sections and t.precision == "fp16" and t.device == "cpu":
        raise ConfigError(
            f"{at('train.precision', 'train.device')}: train.precision='fp16' needs CUDA (GradScaler); use "
            "train.precision=bf16 or fp32 on CPU, or a CPU preset (--preset cpu or cpu-small)"
        )
    if "model" not in sections:
        return cfg
    settled = settle_method_sections(cfg, at("model.method"))
    for _, section in settled.model.sections:
        _check_method_section(section, at)
    return settled


_SECTION_KEY = re.compile(r"^(model\.[A-Za-z_]\w*\.[A-Za-z_]\w*)")


def _check_method_section(section: Any, at: _Origins) -> None:
    """Run a method section's own ``check()`` (if it has one); its refusal names ``model.<section>.<key>``
    first, and is led here by the flag, file or ``--set`` item that set that key."""
    check = getattr(section, "check", None)
    if not callable(check):
        return
    try:
        check()
    except ConfigError as exc:
        message = str(exc)
        found = _SECTION_KEY.match(message)
        raise ConfigError(f"{at(found.group(1)) if found else at()}: {message}") from None


def settle_method_sections(cfg: Config, source: str = "config") -> Config:
    """Refuse a changed section of another method; fill in the active method's sections' defaults.

    An untouched section of another method (e.g. in a config file saved by a run of that method) is
    dropped, so a resolved config lists exactly the sections its method reads, with every value.
    """
    method = cfg.model.method
    given = dict(cfg.model.sections)
    kept: dict[str, Any] = {}
    for name, section in given.items():
        owners = method_section_owners(name)
        if method in owners:
            kept[name] = section
            continue
        default = type(section)()
        changed = [
            f.name
            for f in dataclasses.fields(section)
            if getattr(section, f.name) != getattr(default, f.name)
        ]
        if changed:
            key = changed[0]
            who = " and ".join(repr(o) for o in owners)
            raise ConfigError(
                f"{source}: model.{name}.{key}={getattr(section, key)!r} is a setting of method {who}, "
                f"not of model.method={method!r}"
            )
    for name, section_type in method_section_types().items():
        if method in _SECTION_OWNERS.get(name, ()) and name not in kept:
            kept[name] = section_type()
    if kept == given:
        return cfg
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, sections=tuple(sorted(kept.items())))
    )


def _nest(key: str, value: Any) -> dict[str, Any]:
    """``"a.b.c", v`` -> ``{"a": {"b": {"c": v}}}``."""
    *parents, leaf = key.split(".")
    node: dict[str, Any] = {leaf: value}
    for part in reversed(parents):
        node = {part: node}
    return node


def _refuse_foreign(keys: Iterable[str], editable: Collection[str], where: str, command: str) -> None:
    foreign = [k for k in keys if k.split(".")[0] not in editable]
    if foreign:
        allowed = ", ".join(f"{s}.*" for s in editable)
        raise ConfigError(f"{where}: {command} changes only {allowed} keys, not {foreign[0]!r}")


def resolve_config(
    preset: str = "paper",
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    *,
    base: Config | None = None,
    base_source: str | None = None,
    flag_names: Mapping[str, str] | None = None,
    sections: Collection[str] = ALL_SECTIONS,
    editable: Collection[str] | None = None,
    command: str = "this command",
) -> Config:
    """The configuration of one command: base -> ``--config`` YAML -> ``--set`` items -> named flags.

    The single resolver of every command (``sie train``, ``config show``, ``methods``, ``eval`` and
    ``render``); each passes the ``sections`` it reads, and only those are validated.

    Args:
        preset: training preset name giving the base (ignored when ``base`` is given).
        config_file: YAML file laid over the base (a partial or complete config).
        overrides: ``KEY=VALUE`` items of ``--set``.
        flags: dotted key -> value of the command's named flags; None = not given.
        base: the config to start from instead of a preset (e.g. a run's saved config).
        base_source: how messages name the base (default ``--preset NAME``).
        flag_names: dotted key -> the flag that sets it (default ``--LEAF``), for messages.
        sections: the sections the command reads; only these are validated.
        editable: sections a YAML file or ``--set`` may change (None = all); a key outside them is
            refused naming it (``sie eval`` may not change the model it evaluates).
        command: the command named in that refusal.
    """
    cfg = base if base is not None else get_preset(preset)
    origins = _Origins(base_source or f"--preset {preset}")
    if config_file is not None:
        path = Path(config_file)
        loaded = _read_yaml_mapping(path)
        if editable is not None:
            _refuse_foreign(_leaf_keys(loaded), editable, f"--config {path}", command)
        cfg = config_from_dict(_merge(config_to_dict(cfg), loaded), source=str(path))
        origins.set(_leaf_keys(loaded), f"--config {path}")
    for item in overrides:  # one at a time, so a message names the item at fault
        where = f"--set {item}"
        key = item.partition("=")[0]
        if editable is not None and "=" in item:
            _refuse_foreign([key], editable, where, command)
        cfg = apply_overrides(cfg, [item])
        origins.set([key], where)
    for key, value in (flags or {}).items():
        if value is None:
            continue
        name = (flag_names or {}).get(key) or "--" + key.rsplit(".", 1)[-1].replace("_", "-")
        cfg = config_from_dict(_merge(config_to_dict(cfg), _nest(key, value)), source=name)
        origins.set([key], name)
    return validate(cfg, origins.default, sections=sections, origins=origins.keys)


def config_diff(a: Config, b: Config) -> list[tuple[str, Any, Any]]:
    """``[(dotted_key, value_in_a, value_in_b)]`` for every leaf that differs."""

    def flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, Mapping):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    fa, fb = flat(config_to_dict(a)), flat(config_to_dict(b))
    return [(k, fa.get(k), fb.get(k)) for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)]


def save_config(cfg: Config, directory: str | Path) -> Path:
    """Write the resolved config as ``DIR/config.yaml`` (atomically) and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    from sie.files import atomic_write_text

    return atomic_write_text(
        directory / CONFIG_FILENAME, yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    )
