"""Render backends, chosen by name; ``auto`` takes the best one installed for the device and says which.

=======  ============================================================================
name     what it needs
=======  ============================================================================
warp     ``warp-lang`` (the ``render`` extra): NVIDIA Warp ray casting, one compiled
         kernel for CPU and CUDA; the fastest, ``auto``'s choice wherever it is installed
embree   ``embreex`` (the ``embree`` extra): Intel Embree ray casting with numpy shading,
         CPU only, 1.7-4.4x slower than warp on a CPU; an independent second
         implementation of the same scene (tests check both give the same images), and
         ``auto``'s choice on a CPU without Warp
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

BACKENDS: dict[str, str] = {
    "warp": "sie.render.backends.warp_backend",
    "embree": "sie.render.backends.embree_backend",
}
"""Backend name -> module; ``auto`` tries them in this order (on a CPU)."""

_CLASSES = {"embree": "EmbreeRenderer", "warp": "WarpRenderer"}
_GPU_BACKENDS = ("warp",)


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


def resolve_backend_name(name: str, device: str = "cpu") -> str:
    """``auto`` -> the first available backend that runs on ``device``; a named one must exist and be importable.

    Args:
        name: ``auto`` or a key of :data:`BACKENDS`.
        device: the resolved device (``cpu``, ``cuda``, ``cuda:N``): only GPU backends qualify for a GPU.
    """
    status = backend_status()
    if name == "auto":
        on_gpu = device.startswith("cuda")
        for candidate, problem in status.items():
            if problem is None and (not on_gpu or candidate in _GPU_BACKENDS):
                if candidate != next(iter(status)):
                    skipped = {n: p for n, p in status.items() if n != candidate and p is not None}
                    if skipped:
                        _log.info(
                            "render.backend=auto: using %s (%s)",
                            candidate,
                            "; ".join(f"{n} unavailable: {p}" for n, p in skipped.items()),
                        )
                return candidate
        reasons = "; ".join(f"{n}: {p}" for n, p in status.items())
        raise UsageError(f"no render backend is available for device {device!r} ({reasons})")
    if name not in BACKENDS:
        raise UsageError(f"render.backend={name!r} is unknown; available: auto, {', '.join(BACKENDS)}")
    problem = status[name]
    if problem is not None:
        raise UsageError(f"render.backend={name!r} cannot be used here: {problem}")
    return name


def _default_device() -> str:
    """``cuda`` when PyTorch sees a GPU, else ``cpu`` (what ``device=auto`` means for the backend choice)."""
    from sie.device import default_device_name

    return default_device_name()


def create_renderer(
    name: str = "auto",
    settings: RenderSettings | None = None,
    scene: SceneSpec | None = None,
    device: str = "auto",
) -> Renderer:
    """A ready renderer of backend ``name`` (or ``auto``) on ``device`` (``auto``, ``cpu``, ``cuda[:N]``)."""
    resolved = resolve_backend_name(name, _default_device() if device == "auto" else device)
    module = importlib.import_module(BACKENDS[resolved])
    cls = getattr(module, _CLASSES[resolved])
    renderer: Renderer = cls(settings=settings or RenderSettings(), scene=scene or SceneSpec(), device=device)
    return renderer
