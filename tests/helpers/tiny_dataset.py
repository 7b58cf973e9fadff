"""Write a tiny dataset in the exact 3DIEBench layout, for tests (numpy + PIL only, fast).

Layout (DESIGN.md contract 1)::

    ROOT/SYNSET/OBJ/image_{v}.jpg     size x size RGB JPEG
    ROOT/SYNSET/OBJ/latent_{v}.npy    float64 (latent_size,): rot x, rot y, rot z, floor hue,
                                      spot theta, spot phi, spot hue [, trans x, trans y, trans z]
    ROOT/{train,val}_images.npy       '<U' strings '/SYNSET/OBJ/'
    ROOT/{train,val}_labels.npy       int64, index of the synset in sorted order

The images depend on the latents in a learnable way, so end-to-end tests can see learning:

* the background colour is the floor colour HSV(floor_hue, 0.6, 0.6), as in 3DIEBench;
* each class has its own rigid 3D "wire" shape (a few points joined by segments, plus three coloured
  axis stubs so every orientation looks different); it is rotated by R = Rz Ry Rx of the Euler
  latents (extrinsic xyz), orthographically projected and drawn, so position/orientation in the
  image follow the rotation; translations (-T variant) shift it;
* the shape's colour is the spot colour HSV(spot_hue, 1, 0.8); the spot angles set its brightness.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["sample_latents", "tiny_synsets", "write_tiny_dataset"]

# Per-view sampling laws of 3DIEBench (the SIE paper and facebookresearch/SIE); translations of the -T variant.
_ROT_RANGE = math.pi / 2
_TRANSLATION_RANGE = 0.5


def tiny_synsets(classes: int) -> list[str]:
    """Distinct 8-digit synset ids, returned sorted (so label = position in this list)."""
    return sorted(f"{2691156 + 37_013 * c:08d}" for c in range(classes))


def sample_latents(rng: np.random.Generator, views: int, latent_size: int = 7) -> np.ndarray:
    """(views, latent_size) float64 latents drawn with the 3DIEBench sampling laws."""
    if latent_size not in (7, 10):
        raise ValueError(f"latent_size must be 7 or 10; got {latent_size}")
    lat = np.empty((views, latent_size), dtype=np.float64)
    lat[:, 0:3] = rng.uniform(-_ROT_RANGE, _ROT_RANGE, size=(views, 3))
    lat[:, 3] = rng.uniform(0.0, 1.0, size=views)  # floor hue
    lat[:, 4] = rng.uniform(0.0, math.pi / 4, size=views)  # spot theta
    lat[:, 5] = rng.uniform(0.0, 2 * math.pi, size=views)  # spot phi
    lat[:, 6] = rng.uniform(0.0, 1.0, size=views)  # spot hue
    if latent_size == 10:
        lat[:, 7:10] = rng.uniform(-_TRANSLATION_RANGE, _TRANSLATION_RANGE, size=(views, 3))
    return lat


def _rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """R = Rz(a_z) Ry(a_y) Rx(a_x) (extrinsic xyz), written out here so the helper stands alone."""
    ax, ay, az = angles
    cx, sx, cy, sy, cz, sz = (
        math.cos(ax),
        math.sin(ax),
        math.cos(ay),
        math.sin(ay),
        math.cos(az),
        math.sin(az),
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _class_shape(label: int, seed: int) -> np.ndarray:
    """(6, 3) points of the class's wire shape in the unit ball; fixed by (label, seed)."""
    rng = np.random.default_rng([seed, 7919, label])
    pts = rng.normal(size=(6, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    return pts * rng.uniform(0.5, 1.0, size=(6, 1))


def _hsv_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(255 * r), round(255 * g), round(255 * b)


def _render_view(shape: np.ndarray, latent: np.ndarray, size: int) -> Image.Image:
    """One size x size RGB image of ``shape`` posed by ``latent`` (see the module docstring)."""
    img = Image.new("RGB", (size, size), _hsv_rgb(float(latent[3]), 0.6, 0.6))
    draw = ImageDraw.Draw(img)
    rot = _rotation_matrix(latent[0:3])
    offset = latent[7:10] if latent.shape[0] >= 10 else np.zeros(3)
    brightness = 0.55 + 0.45 * math.cos(float(latent[4]))  # spot theta in [0, pi/4]
    colour = _hsv_rgb(float(latent[6]), 1.0, 0.8 * brightness)
    scale = 0.36 * size
    centre = size / 2

    def project(p: np.ndarray) -> tuple[float, float]:
        q = rot @ p + offset
        return centre + scale * q[0], centre - scale * q[1]

    width = max(1, size // 16)
    pts = [project(p) for p in shape]
    draw.line([*pts, pts[0]], fill=colour, width=width)
    # Three axis stubs in fixed colours disambiguate orientations the wire alone would confuse.
    origin = project(np.zeros(3))
    for axis, fill in enumerate(((255, 255, 255), (0, 0, 0), (255, 255, 0))):
        tip = np.zeros(3)
        tip[axis] = 0.8
        draw.line([origin, project(tip)], fill=fill, width=width)
    return img


def write_tiny_dataset(
    root: str | Path,
    *,
    classes: int = 3,
    objects_per_class: int = 4,
    views: int = 5,
    size: int = 32,
    seed: int = 0,
    latent_size: int = 7,
    val_fraction: float = 0.25,
) -> Path:
    """Write a deterministic dataset in the exact 3DIEBench layout under ``root`` and return ``root``.

    Objects of each class are split into val (the first ``round(objects_per_class * val_fraction)``)
    and train (the rest); split files list objects class by class. Same arguments give the same bytes.
    """
    if classes < 1 or objects_per_class < 1 or views < 1 or size < 8:
        raise ValueError("write_tiny_dataset needs classes, objects_per_class, views >= 1 and size >= 8")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_val = round(objects_per_class * val_fraction)
    entries: dict[str, list[str]] = {"train": [], "val": []}
    labels: dict[str, list[int]] = {"train": [], "val": []}
    for label, synset in enumerate(tiny_synsets(classes)):
        shape = _class_shape(label, seed)
        for i in range(objects_per_class):
            obj = rng.bytes(16).hex()
            obj_dir = root / synset / obj
            obj_dir.mkdir(parents=True, exist_ok=True)
            # A small per-object deformation so objects of one class are similar but not identical.
            obj_shape = shape + rng.normal(scale=0.08, size=shape.shape)
            latents = sample_latents(rng, views, latent_size)
            for v in range(views):
                _render_view(obj_shape, latents[v], size).save(obj_dir / f"image_{v}.jpg", quality=95)
                np.save(obj_dir / f"latent_{v}.npy", latents[v])
            split = "val" if i < n_val else "train"
            entries[split].append(f"/{synset}/{obj}/")
            labels[split].append(label)
    for split in ("train", "val"):
        np.save(root / f"{split}_images.npy", np.array(entries[split], dtype=str))
        np.save(root / f"{split}_labels.npy", np.array(labels[split], dtype=np.int64))
    return root
