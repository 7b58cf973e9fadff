"""The arrays behind the report's figures, gathered by ``sie eval`` and stored in ``RUN/eval/figures.npz``.

``sie report`` draws from this file alone (no dataset or checkpoint needed). Keys:

* ``preview/images`` (R, C, h, w, 3) uint8, ``preview/labels`` (R,) str: a few val objects, their views.
* ``orbit/<part>/angles`` (n, 3) radians, ``orbit/<part>/errors`` (n,) degrees: for each val evaluation
  pair of the rotation probe, the Euler angles (extrinsic xyz) of the relative rotation and the angle
  between predicted and true rotation. ``orbit/predictor/...``: the same for the predictor's PRE
  retrieval (val, val), with the absolute rotation of the target view on the x-axis.
* ``retrieval/sources`` (Q, h, w, 3), ``retrieval/targets`` and ``retrieval/retrieved`` (Q, S, h, w, 3),
  ``retrieval/correct`` (Q, S) bool, ``retrieval/captions`` (Q, S) str: predictor retrieval panels.
* ``steering/encoded`` and ``steering/predicted`` (S, 2), ``steering/angles`` (S,), ``steering/info``
  (1,) str: latent steering along a sweep (see :func:`steering_arrays`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from sie.data.transforms import resize_uint8
from sie.geometry import (
    euler_xyz_to_quaternion,
    geodesic_angle_quaternion,
    matrix_to_euler_xyz,
    quaternion_to_matrix,
)

if TYPE_CHECKING:
    from sie.data.source import ViewSource

__all__ = [
    "load_figure_data",
    "orbit_error_arrays",
    "predictor_orbit_arrays",
    "preview_arrays",
    "retrieval_panel_arrays",
    "save_figure_data",
    "steering_arrays",
]

THUMBNAIL = 96  # px; larger stored images are shrunk for the report


def save_figure_data(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_figure_data(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _thumbnails(images: Tensor) -> np.ndarray:
    """uint8 (n, 3, H, W) -> (n, h, w, 3) with the side shrunk to THUMBNAIL when larger."""
    side = int(images.shape[-1])
    if side > THUMBNAIL:
        images = resize_uint8(images, THUMBNAIL)
    return images.permute(0, 2, 3, 1).numpy().astype(np.uint8)


def _one_object_per_class(labels: Tensor, count: int) -> list[int]:
    chosen, seen = [], set()
    for i, label in enumerate(labels.tolist()):
        if label not in seen:
            chosen.append(i)
            seen.add(label)
        if len(chosen) == count:
            break
    for i in range(labels.numel()):  # fewer classes than wanted: fill with further objects
        if len(chosen) >= min(count, labels.numel()):
            break
        if i not in chosen:
            chosen.append(i)
    return chosen


def preview_arrays(source: ViewSource, objects: int = 4, views: int = 8) -> dict[str, np.ndarray]:
    """A few objects of distinct classes and their first views."""
    labels = torch.as_tensor(np.asarray(source.labels))
    chosen = _one_object_per_class(labels, objects)
    v = min(views, source.views_per_object)
    rows = [_thumbnails(source.read_views(o, list(range(v)))) for o in chosen]
    names = [
        f"{source.class_names[int(labels[o])]}\n{source.object_ids[o].split('/')[-1][:8]}" for o in chosen
    ]
    return {"preview/images": np.stack(rows), "preview/labels": np.array(names, dtype=str)}


def orbit_error_arrays(part: str, predictions: Tensor, targets: Tensor) -> dict[str, np.ndarray]:
    """Relative-rotation Euler angles (n, 3) and rotation-probe errors (n,) in degrees."""
    t = targets[:, :4].double()
    angles = matrix_to_euler_xyz(quaternion_to_matrix(t))
    errors = torch.rad2deg(geodesic_angle_quaternion(predictions[:, :4].double(), t))
    return {f"orbit/{part}/angles": angles.numpy(), f"orbit/{part}/errors": errors.numpy()}


def predictor_orbit_arrays(
    query_latents: Tensor, nearest: Tensor, gallery_latents: Tensor
) -> dict[str, np.ndarray]:
    """Predictor retrieval error (degrees) against the target view's absolute Euler angles."""
    q_lat = query_latents.reshape(-1, query_latents.shape[-1])
    g_lat = gallery_latents.reshape(-1, gallery_latents.shape[-1])
    q_true = euler_xyz_to_quaternion(q_lat[:, 0:3].double())
    q_ret = euler_xyz_to_quaternion(g_lat[nearest, 0:3].double())
    errors = torch.rad2deg(geodesic_angle_quaternion(q_true, q_ret))
    return {"orbit/predictor/angles": q_lat[:, 0:3].numpy(), "orbit/predictor/errors": errors.numpy()}


def retrieval_panel_arrays(
    source: ViewSource, nearest: Tensor, *, queries: int = 3, steps: int = 6
) -> dict[str, np.ndarray]:
    """Panels from the (val, val) PRE retrieval: start view 0, target views by increasing rotation angle.

    ``nearest`` (N * V,) indexes the flattened val gallery (object-major) for the query (n, v).
    """
    v = source.views_per_object
    latents = torch.as_tensor(np.asarray(source.latents))
    labels = torch.as_tensor(np.asarray(source.labels))
    chosen = _one_object_per_class(labels, queries)
    s = min(steps, v - 1)
    sources, targets, retrieved, correct, captions = [], [], [], [], []
    for o in chosen:
        q = euler_xyz_to_quaternion(latents[o, :, 0:3].double())
        angle = torch.rad2deg(geodesic_angle_quaternion(q[:1], q))  # rotation from view 0 to each view
        ends = (torch.argsort(angle[1:]) + 1)[torch.linspace(0, v - 2, s).round().long()].tolist()
        hits = [int(nearest[o * v + e]) for e in ends]
        sources.append(_thumbnails(source.read_views(o, [0]))[0])
        targets.append(_thumbnails(source.read_views(o, ends)))
        retrieved.append(np.stack([_thumbnails(source.read_views(h // v, [h % v]))[0] for h in hits]))
        correct.append([h == o * v + e for h, e in zip(hits, ends, strict=True)])
        captions.append([f"{float(angle[e]):.0f}°" for e in ends])
    return {
        "retrieval/sources": np.stack(sources),
        "retrieval/targets": np.stack(targets),
        "retrieval/retrieved": np.stack(retrieved),
        "retrieval/correct": np.array(correct, dtype=bool),
        "retrieval/captions": np.array(captions, dtype=str),
    }


def _pca_2d(encoded: Tensor, predicted: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Project both point sets (S, E) on the top-2 principal axes of their union."""
    both = torch.cat((encoded, predicted)).double()
    centred = both - both.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    proj = centred @ vh[:2].T
    if proj.shape[1] < 2:
        proj = torch.cat((proj, torch.zeros(proj.shape[0], 2 - proj.shape[1], dtype=proj.dtype)), 1)
    n = encoded.shape[0]
    return proj[:n].numpy(), proj[n:].numpy()


def steering_arrays(encoded: Tensor, predicted: Tensor, angles: Tensor, info: str) -> dict[str, np.ndarray]:
    """Latent steering: encoded sweep embeddings (S, E) and predictions from the first one (S, E), normalised,
    projected together to 2-D; ``angles`` (S,) radians of the swept rotation; ``info`` says what was swept."""
    e = torch.nn.functional.normalize(encoded.double(), dim=-1)
    p = torch.nn.functional.normalize(predicted.double(), dim=-1)
    enc2, pred2 = _pca_2d(e, p)
    return {
        "steering/encoded": enc2,
        "steering/predicted": pred2,
        "steering/angles": angles.double().numpy(),
        "steering/info": np.array([info], dtype=str),
    }
