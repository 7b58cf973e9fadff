"""What every render backend provides: settings, the renderer interface and the result type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from sie.render.mesh import Mesh
from sie.render.scene import SceneSpec, ViewBatch

__all__ = ["RenderOutput", "RenderSettings", "Renderer", "padded_bounds", "srgb_lookup_table"]

SRGB_TABLE_SIZE = 1 << 14
"""Entries of the linear -> sRGB table: at most ~0.2 code values from the exact transfer function."""


def srgb_lookup_table(entries: int = SRGB_TABLE_SIZE) -> np.ndarray:
    """(entries,) uint8: the sRGB code of linear value k / (entries - 1), rounded to nearest."""
    x = np.linspace(0.0, 1.0, entries)
    srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
    return np.round(srgb * 255.0).astype(np.uint8)


def padded_bounds(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """float32 (3,) corners of the mesh's bounding box grown by 1e-4 of its diagonal, so that a ray
    grazing a face that lies in the box's wall still counts as entering the box."""
    lo, hi = mesh.bounds
    pad = 1e-4 * float(np.linalg.norm(hi - lo)) + 1e-6
    return (lo - pad).astype(np.float32), (hi + pad).astype(np.float32)


@dataclass(frozen=True)
class RenderSettings:
    """How images are formed (the scene itself is a :class:`~sie.render.scene.SceneSpec`).

    Attributes:
        size: image side in pixels.
        samples_per_pixel: camera rays per anti-aliased pixel (stratified sub-pixel positions),
            also the number of points sampled on the spot's disk for soft shadows.
        antialias: ``adaptive`` traces one ray per pixel, then ``samples_per_pixel`` rays only where
            the one-ray image bends by more than ``contrast`` (edges, creases, shadow borders);
            ``full`` traces ``samples_per_pixel`` rays in every pixel.
        contrast: second difference across a pixel, in 8-bit sRGB code values, above which the
            pixel is supersampled (``|2 c - a - b|`` of its opposite neighbours, any channel).
        crease_degrees: auto-smooth angle of the shading normals (0 = flat shading).
    """

    size: int = 256
    samples_per_pixel: int = 4
    antialias: Literal["adaptive", "full"] = "adaptive"
    contrast: int = 4
    crease_degrees: float = 30.0


@dataclass(frozen=True)
class RenderOutput:
    """Rendered views.

    Attributes:
        images: (V, H, W, 3) uint8 sRGB.
        object_mask: (V, H, W) bool, True where the pixel-centre ray hits the object; only when asked.
    """

    images: np.ndarray
    object_mask: np.ndarray | None = None


class Renderer(Protocol):
    """A backend bound to one device; ``set_mesh`` once per object, then ``render`` its views."""

    name: str
    device: str
    settings: RenderSettings
    scene: SceneSpec

    def set_mesh(self, mesh: Mesh) -> None:
        """Upload a mesh and build its acceleration structure (replaces the previous one)."""
        ...

    def render(self, views: ViewBatch, *, object_mask: bool = False) -> RenderOutput:
        """Render every view of the current mesh."""
        ...

    def describe(self) -> dict[str, str]:
        """Backend name, version and device, for the dataset manifest."""
        ...

    def warm_up(self) -> None:
        """Compile or load the backend's kernels now (before worker processes start)."""
        ...
