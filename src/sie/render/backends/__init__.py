"""Render backends, chosen by name; ``auto`` takes the best one installed and says which.

=======  ============================================================================
name     what it needs
=======  ============================================================================
warp     ``warp-lang`` (the ``render`` extra): NVIDIA Warp ray casting, CPU or CUDA
=======  ============================================================================
"""

from __future__ import annotations

import importlib

from sie.errors import UsageError
from sie.log import get_logger
from sie.render.backends.base import Renderer, RenderOutput, RenderSettings
from sie.render.scene import SceneSpec

__all__ = [
    "BACKENDS",
    "RenderOutput",
    "RenderSettings",
    "Renderer",
    "backend_status",
    "create_renderer",
    "resolve_backend_name",
]

_log = get_logger(__name__)

BACKENDS: dict[str, str] = {"warp": "sie.render.backends.warp_backend"}
"""Backend name -> module; ``auto`` tries them in this order."""

_CLASSES = {"warp": "WarpRenderer"}


def backend_status() -> dict[str, str | None]:
    """For each backend, None when it can be imported here, else the reason it cannot."""
    status: dict[str, str | None] = {}
    for name, module in BACKENDS.items():
        try:
            importlib.import_module(module)
            status[name] = None
        except ImportError as exc:
            status[name] = str(exc)
    return status


def resolve_backend_name(name: str) -> str:
    """``auto`` -> the first available backend; a named one must exist and be importable."""
    status = backend_status()
    if name == "auto":
        for candidate, problem in status.items():
            if problem is None:
                return candidate
        reasons = "; ".join(f"{n}: {p}" for n, p in status.items())
        raise UsageError(f"no render backend is available ({reasons})")
    if name not in BACKENDS:
        raise UsageError(f"render.backend={name!r} is unknown; available: auto, {', '.join(BACKENDS)}")
    problem = status[name]
    if problem is not None:
        raise UsageError(f"render.backend={name!r} cannot be used here: {problem}")
    return name


def create_renderer(
    name: str = "auto",
    settings: RenderSettings | None = None,
    scene: SceneSpec | None = None,
    device: str = "auto",
) -> Renderer:
    """A ready renderer of backend ``name`` (or ``auto``) on ``device`` (``auto``, ``cpu``, ``cuda[:N]``)."""
    resolved = resolve_backend_name(name)
    module = importlib.import_module(BACKENDS[resolved])
    cls = getattr(module, _CLASSES[resolved])
    renderer: Renderer = cls(settings=settings or RenderSettings(), scene=scene or SceneSpec(), device=device)
    return renderer
