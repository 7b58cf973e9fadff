"""Checkpoints: atomic save, safe load, backbone export to safetensors, and rebuilding from a run.

Two artefacts per run directory (DESIGN.md contract 5):

* ``checkpoint.pt``: everything needed to resume (model, optimiser, scaler, step, epoch, config, RNG
  states, sampler position). It holds only tensors and primitive Python types, so it loads with
  ``torch.load(..., weights_only=True)`` (no pickled classes, no code execution on load).
* ``backbone.safetensors``: the backbone's weights only, with clean keys (no ``module.``,
  ``_orig_mod.`` or ``backbone.`` prefix) that load strictly into the backbone class, plus string
  metadata (arch, small_stem, width, num_features, method, step, the run's config as YAML).

Writes are atomic: the bytes go to a temporary file in the same directory, are flushed and fsynced,
and only then renamed over the old file. A failure while writing (a full disk, say) leaves the
previous file untouched and removes the temporary one.

``load_backbone`` and ``load_method`` rebuild modules through :mod:`sie.nn.backbones` and
:mod:`sie.methods`; those imports sit inside the functions so that this low-level module (which
training and evaluation both use) stays importable on its own and cheap to import.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from sie.errors import UsageError, WorkFailed
from sie.files import atomic_write

if TYPE_CHECKING:
    from sie.config import Config

__all__ = [
    "BACKBONE_FILENAME",
    "CHECKPOINT_FILENAME",
    "CHECKSUM_KEY",
    "RUN_INFO_FILENAME",
    "atomic_write",
    "checkpoint_hash",
    "clean_state_dict_keys",
    "export_backbone",
    "load_backbone",
    "load_checkpoint",
    "load_method",
    "load_state_strict",
    "read_backbone_metadata",
    "read_run_info",
    "remove_stale_temporaries",
    "save_checkpoint",
    "state_checksum",
]

CHECKPOINT_FILENAME = "checkpoint.pt"
BACKBONE_FILENAME = "backbone.safetensors"
RUN_INFO_FILENAME = "run.json"

# Prefixes that wrappers add to parameter names: DDP (``module.``), torch.compile (``_orig_mod.``) and
# a method holding its backbone (``backbone.``). Exported keys must carry none of them.
_WRAPPER_SEGMENTS = ("module", "_orig_mod")


# ---- atomic writes: sie.files (re-exported here for the run-directory writers) --------------


def remove_stale_temporaries(directory: str | Path, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` of ``DIR/NAME`` leaves when killed mid-write.

    They are ``DIR/.NAME.*.tmp`` (and ``DIR/NAME.tmp``, the config's); a process killed with SIGKILL
    while writing a checkpoint leaves one as large as the checkpoint. Call it only where no other
    process writes these files (a training run starting or resuming). Returns what was removed.
    """
    directory = Path(directory)
    removed: list[Path] = []
    for name in names:
        for tmp in [*directory.glob(f".{glob.escape(name)}.*.tmp"), directory / f"{name}.tmp"]:
            if tmp.is_file():
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed.append(tmp)
    return removed


CHECKSUM_KEY = "checksum"
"""Entry of a checkpoint holding ``"sha256:HEX"``, the :func:`state_checksum` of everything else in it."""


def _feed(digest: Any, value: Any) -> None:
    """Feed a canonical encoding of ``value`` (nested dicts/lists of tensors and primitives) to ``digest``."""
    if isinstance(value, Tensor):
        tensor = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"T{tensor.dtype}{tuple(value.shape)}:".encode())
        if tensor.numel():
            digest.update(tensor.view(torch.uint8).numpy().data)
    elif isinstance(value, Mapping):
        digest.update(b"{%d:" % len(value))
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[%d:" % len(value))
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def state_checksum(state: Mapping[str, Any]) -> str:
    """``"sha256:HEX"`` of every tensor (dtype, shape, bytes) and value in ``state``, in its key order.

    Stored in the checkpoint by :func:`save_checkpoint` and verified by :func:`load_checkpoint`, so
    flipped bits in the weights are caught even where the archive format itself checks nothing.
    """
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in state.items() if k != CHECKSUM_KEY})
    return f"sha256:{digest.hexdigest()}"


class _RecordingWriter:
    """A file-like ``write`` for ``torch.save`` that keeps the exception the real write raised.

    ``torch.save`` turns an exception inside a write (``ENOSPC``, a KeyboardInterrupt) into a
    ``RuntimeError`` such as "unexpected pos"; this keeps the original to report or re-raise.
    """

    def __init__(self, handle: io.BufferedWriter) -> None:
        self.handle = handle
        self.error: BaseException | None = None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except BaseException as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Atomically write ``state`` (tensors and primitive types only) with ``torch.save``.

    The state gets a :data:`CHECKSUM_KEY` entry (:func:`state_checksum`) that loading verifies.

    Raises:
        WorkFailed: the file could not be written (e.g. ``ENOSPC``); the previous file is intact.
        KeyboardInterrupt: interrupted while writing; the previous file is intact.
    """
    path = Path(path)
    payload = dict(state)
    payload[CHECKSUM_KEY] = state_checksum(payload)
    try:
        with atomic_write(path) as handle:
            writer = _RecordingWriter(handle)
            try:
                torch.save(payload, writer)  # type: ignore[arg-type]
            except RuntimeError:
                if writer.error is not None:  # the write's own error, not torch's rewording of it
                    raise writer.error from None
                raise
    except (OSError, RuntimeError) as exc:  # RuntimeError: torch's own writer failed
        reason = (exc.strerror if isinstance(exc, OSError) else None) or _first_line(exc)
        raise WorkFailed(
            f"could not write checkpoint {path}: {reason}; the previous checkpoint (if any) is intact"
        ) from exc
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _why_unreadable(path: Path, exc: Exception) -> str:
    """What a failed ``torch.load`` means, in words (torch's own text advises unsafe loading)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        return "it is not a file written by torch.save (no zip archive header)"
    text = str(exc)
    if "central directory" in text or isinstance(exc, EOFError):
        return "the archive is incomplete (truncated or partly overwritten); restore it from a copy"
    if "Weights only load failed" in text:
        return "it holds Python objects other than tensors and plain containers, which sie never writes"
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first_line


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, with ``weights_only=True``.

    Raises:
        UsageError: the file is missing, or is not a checkpoint that loads safely.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... by cause
        raise UsageError(f"{path} is not a readable sie checkpoint: {_why_unreadable(path, exc)}") from None
    if not isinstance(state, dict):
        raise UsageError(f"{path} is not an sie checkpoint (expected a dict, got {type(state).__name__})")
    stored = state.pop(CHECKSUM_KEY, None)  # absent from checkpoints written before it existed
    if stored is not None:
        computed = state_checksum(state)
        if stored != computed:
            raise UsageError(
                f"{path} is corrupt: its tensors do not match the checksum written with them (stored "
                f"{str(stored)[:23]}..., computed {computed[:23]}...); restore it from a copy"
            )
    return state


def read_run_info(path: str | Path) -> dict[str, Any]:
    """``RUN/run.json`` as a dict.

    Raises:
        UsageError: the file cannot be read or is not a JSON object (one line naming it).
    """
    path = Path(path)
    try:
        info = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"{path} is not valid JSON ({exc}); restore it from a copy, or delete it (training history, "
            "dataset hash and transform dimension are lost)"
        ) from None
    if not isinstance(info, dict):
        raise UsageError(f"{path} is not a JSON object (got {type(info).__name__})")
    return info


def checkpoint_hash(path: str | Path) -> str:
    """The first 16 hex digits of the SHA-256 of a file's bytes: names the exact weights a result used."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


# ---- clean keys --------------------------------------------------------------------------------


def clean_state_dict_keys(state: Mapping[str, Tensor], *, strip_prefix: str = "") -> dict[str, Tensor]:
    """Drop wrapper segments (``module.``, ``_orig_mod.``) anywhere in a key, then ``strip_prefix``.

    ``{"module.backbone._orig_mod.conv1.weight": w}`` with ``strip_prefix="backbone."`` becomes
    ``{"conv1.weight": w}``. Prefixes are removed as whole dotted segments (never ``str.lstrip``,
    which strips characters). Two keys that collapse to the same name are an error.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        parts = [p for p in key.split(".") if p not in _WRAPPER_SEGMENTS]
        clean = ".".join(parts)
        if strip_prefix:
            clean = clean.removeprefix(strip_prefix)
        if clean in out:
            raise ValueError(f"state dict keys collide after cleaning: {key!r} -> {clean!r}")
        out[clean] = value
    return out


# ---- backbone export ---------------------------------------------------------------------------


def _backbone_tensors(method: nn.Module) -> dict[str, Tensor]:
    getter: Callable[[], Mapping[str, Tensor]] | None = getattr(method, "backbone_state_dict", None)
    state = getter() if getter is not None else method.backbone.state_dict()  # type: ignore[union-attr]
    cleaned = clean_state_dict_keys(state, strip_prefix="backbone.")
    # safetensors refuses shared or non-contiguous storage: give every tensor its own contiguous copy.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in cleaned.items()}


def export_backbone(
    method: nn.Module,
    path: str | Path,
    cfg: Config | None = None,
    *,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write the backbone of ``method`` to ``path`` (safetensors, atomic) with clean keys and metadata.

    Args:
        method: a method (possibly wrapped in DDP or compiled) with a ``backbone`` exposing
            ``num_features``; ``backbone_state_dict()`` is used when the method defines it.
        path: output file, conventionally ``RUN/backbone.safetensors``.
        cfg: the run's config; gives ``arch``, ``small_stem`` and ``method`` (falls back to
            ``method.cfg``). The whole config is stored as YAML under ``config``.
        metadata: extra string entries (e.g. ``step``).
    """
    import yaml
    from safetensors.torch import save as safetensors_save

    from sie.config import config_to_dict

    inner = getattr(method, "module", method)  # DDP
    if cfg is None:
        cfg = getattr(inner, "cfg", None)
    if cfg is None:
        raise ValueError("export_backbone needs the run's config (cfg=...) or a method with .cfg")
    backbone = inner.backbone
    tensors = _backbone_tensors(inner)
    meta = {
        "format": "sie-backbone-1",
        "arch": cfg.model.arch,
        "small_stem": json.dumps(bool(cfg.model.small_stem)),
        "width": str(int(cfg.model.width)),
        "num_features": str(int(getattr(backbone, "num_features", 0))),
        "method": cfg.model.method,
        "config": yaml.safe_dump(config_to_dict(cfg), sort_keys=False),
    }
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    payload = safetensors_save(tensors, metadata=meta)
    path = Path(path)
    try:
        with atomic_write(path) as handle:
            handle.write(payload)
    except OSError as exc:
        raise WorkFailed(
            f"could not write {path}: {exc.strerror or exc}; the previous file is intact"
        ) from exc
    return path


def read_backbone_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``backbone.safetensors`` file (arch, small_stem, num_features, ...)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no backbone file at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception as exc:
        raise UsageError(f"{path} is not a readable safetensors file: {exc}") from None
    return dict(meta)


def load_state_strict(module: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with shape mismatches reported as one readable UsageError."""
    own = module.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own.keys() & state.keys()
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or mismatched:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

        problems = []
        if missing:
            problems.append(f"missing keys: {show(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {show(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches (file vs model): {show(mismatched)}")
        raise UsageError(f"{what} does not match the model it should load into; " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def load_backbone(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the backbone class named in a ``backbone.safetensors`` file and load it strictly.

    Returns the backbone in eval mode; ``model(images (N, 3, H, W)) -> (N, num_features)``.
    """
    from safetensors.torch import load_file

    from sie.nn.backbones import build_backbone

    path = Path(path)
    meta = read_backbone_metadata(path)
    if "arch" not in meta:
        raise UsageError(f"{path}: no 'arch' in the safetensors metadata; was it written by sie?")
    try:
        backbone = build_backbone(
            meta["arch"],
            small_stem=json.loads(meta.get("small_stem", "false")),
            width=int(meta.get("width", "0")),  # files written before model.width existed: the default
        )
    except ValueError as exc:
        raise UsageError(f"{path}: cannot rebuild its backbone: {exc}") from None
    state = load_file(str(path), device=str(map_location))
    load_state_strict(backbone, state, f"{path} (arch {meta['arch']}, width {meta.get('width', 'default')})")
    result: nn.Module = backbone.eval()
    return result


def load_method(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """Rebuild a run's method from ``RUN/config.yaml`` and load ``RUN/checkpoint.pt`` strictly.

    The transformation dimension comes from ``RUN/run.json`` (written by ``sie train``). Returns
    ``(method in eval mode, config)``. Missing, unexpected or mismatched keys are a UsageError that
    lists them (nothing is silently left at its random initialisation).
    """
    from sie.config import CONFIG_FILENAME, load_config_file
    from sie.methods import build_method

    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILENAME
    if not config_path.is_file():
        raise UsageError(f"{run_dir} is not a run directory: no {CONFIG_FILENAME}")
    cfg = load_config_file(config_path)
    info_path = run_dir / RUN_INFO_FILENAME
    if not info_path.is_file():
        raise UsageError(f"{run_dir} is not a run directory: no {RUN_INFO_FILENAME}")
    info = read_run_info(info_path)
    if "transform_dim" not in info:
        raise UsageError(f"{info_path}: no 'transform_dim' entry")
    state = load_checkpoint(run_dir / CHECKPOINT_FILENAME, map_location=map_location)
    if "model" not in state:
        raise UsageError(f"{run_dir / CHECKPOINT_FILENAME}: no 'model' entry")
    method = build_method(cfg, int(info["transform_dim"]))
    load_state_strict(method, state["model"], str(run_dir / CHECKPOINT_FILENAME))
    rebuilt: nn.Module = method.to(map_location).eval()
    return rebuilt, cfg
