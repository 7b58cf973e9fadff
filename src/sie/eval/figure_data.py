"""The arrays behind the report's figures, gathered by ``sie eval`` and stored in ``RUN/eval/figures.npz``.

``sie report`` draws from this file alone (no dataset or checkpoint needed). Keys:

* ``preview/images`` (R, C, h, w, 3) uint8, ``preview/labels`` (R,) str: a few val objects, their views.
* ``orbit/<part>/angles`` (n, 3) radians, ``orbit/<part>/errors`` (n,) degrees: for each val evaluation
  pair of the rotation probe, the Euler angles (extrinsic xyz) of the relative rotation and the angle
  between predicted and true rotation. ``orbit/predictor/...``: the same for the predictor's PRE
  retrieval (val, val), with the absolute rotation of the target view on the x-axis.
* ``orbit/reference/constant`` () degrees: mean error of the constant predictor (the mean training
  target) on the rotation probe's evaluation pairs; ``orbit/reference/do_nothing`` () degrees: mean
  error of the do-nothing predictor's retrieval (it retrieves the start view). The figure draws both as
  horizontal reference lines.
* ``retrieval/sources`` (Q, h, w, 3), ``retrieval/targets`` and ``retrieval/retrieved`` (Q, S, h, w, 3),
  ``retrieval/correct`` (Q, S) bool, ``retrieval/captions`` (Q, S) str: predictor retrieval panels.
* ``steering/<i>/encoded`` and ``steering/<i>/predicted`` (S, 2), ``steering/<i>/values`` (S,),
  ``steering/<i>/value_label`` and ``steering/<i>/title`` (1,) str: latent steering sweeps
  (see :func:`steering_arrays`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from sie.data.transforms import resize_uint8
from sie.files import atomic_write
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
    "steering_from_features",
    "steering_sweeps",
]

THUMBNAIL = 96  # px; larger stored images are shrunk for the report


def save_figure_data(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    path = Path(path)
    save: Any = np.savez_compressed  # numpy's stub reserves the keyword allow_pickle
    with atomic_write(path) as handle:
        save(handle, **arrays)
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


def class_display_names(root: str | Path, synsets: Sequence[str]) -> dict[str, str]:
    """``{synset: name people read}``: the ``dataset.json`` of ``sie render`` when the dataset has one,
    else the 3DIEBench (ShapeNet) class names the procedural catalog knows, else the synset itself."""
    names: dict[str, str] = {}
    manifest = Path(root) / "dataset.json"
    if manifest.is_file():
        try:
            for entry in json.loads(manifest.read_text()).get("classes", []):
                names[str(entry["synset"])] = str(entry.get("name") or entry["synset"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            names = {}  # an unreadable manifest only costs the readable names
    missing = [s for s in synsets if s not in names]
    if missing:
        from sie.render.procedural.catalog import CLASSES

        known = {c.synset: c.name for c in CLASSES}
        names.update({s: known.get(s, s) for s in missing})
    return names


def object_display_name(object_id: str, class_names: dict[str, str]) -> str:
    """``'02691156/000000042'`` -> ``'airplane #42'``: the class's name and the object's short id."""
    parts = object_id.strip("/").split("/")
    synset, obj = (parts[0], parts[-1]) if len(parts) > 1 else ("", parts[-1])
    short = f"#{int(obj)}" if obj.isdigit() else obj[:8]
    return f"{class_names.get(synset, synset)} {short}".strip()


def preview_arrays(source: ViewSource, objects: int = 4, views: int = 8) -> dict[str, np.ndarray]:
    """A few objects of distinct classes and their first views, labelled with class names."""
    labels = torch.as_tensor(np.asarray(source.labels))
    chosen = _one_object_per_class(labels, objects)
    v = min(views, source.views_per_object)
    rows = [_thumbnails(source.read_views(o, list(range(v)))) for o in chosen]
    readable = class_display_names(source.root, source.class_names)
    names = [object_display_name(source.object_ids[o], readable).replace(" #", "\n#", 1) for o in chosen]
    return {"preview/images": np.stack(rows), "preview/labels": np.array(names, dtype=str)}


def orbit_error_arrays(
    part: str, predictions: Tensor, targets: Tensor, constant: Tensor | None = None
) -> dict[str, np.ndarray]:
    """Relative-rotation Euler angles (n, 3) and rotation-probe errors (n,) in degrees.

    Also ``orbit/reference/constant``: the mean error (degrees) of the constant predictor ``constant``
    (K,) (the mean training target, as the R² chance level; the mean of ``targets`` when not given).
    """
    t = targets[:, :4].double()
    angles = matrix_to_euler_xyz(quaternion_to_matrix(t))
    errors = torch.rad2deg(geodesic_angle_quaternion(predictions[:, :4].double(), t))
    c = (targets if constant is None else constant.reshape(1, -1)).double()[:, :4].mean(0, keepdim=True)
    constant_errors = torch.rad2deg(geodesic_angle_quaternion(c.expand_as(t), t))
    return {
        f"orbit/{part}/angles": angles.numpy(),
        f"orbit/{part}/errors": errors.numpy(),
        "orbit/reference/constant": np.array(float(constant_errors.mean())),
    }


def predictor_orbit_arrays(
    query_latents: Tensor, nearest: Tensor, gallery_latents: Tensor
) -> dict[str, np.ndarray]:
    """Predictor retrieval error (degrees) against the target view's absolute Euler angles.

    ``query_latents`` (N, V, L) (the queries start from view 0 of each object), ``nearest`` (N * V,)
    into the flattened ``gallery_latents`` (M, V', L). Also ``orbit/reference/do_nothing``: the mean
    error (degrees) of the do-nothing predictor, which retrieves view 0 itself.
    """
    q_lat = query_latents.reshape(-1, query_latents.shape[-1])
    g_lat = gallery_latents.reshape(-1, gallery_latents.shape[-1])
    q_true = euler_xyz_to_quaternion(q_lat[:, 0:3].double())
    q_ret = euler_xyz_to_quaternion(g_lat[nearest, 0:3].double())
    errors = torch.rad2deg(geodesic_angle_quaternion(q_true, q_ret))
    q_views = q_true.reshape(*query_latents.shape[:-1], 4)  # (N, V, 4)
    do_nothing = torch.rad2deg(geodesic_angle_quaternion(q_views[:, :1].expand_as(q_views), q_views))
    return {
        "orbit/predictor/angles": q_lat[:, 0:3].numpy(),
        "orbit/predictor/errors": errors.numpy(),
        "orbit/reference/do_nothing": np.array(float(do_nothing.mean())),
    }


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


def steering_arrays(
    index: int, encoded: Tensor, predicted: Tensor, values: Tensor, value_label: str, title: str
) -> dict[str, np.ndarray]:
    """Latent steering sweep ``index``: encoded embeddings (S, E) of the sweep's views and the predictor's
    outputs (S, E) from the first view, both L2-normalised and projected together on their top-2
    principal axes; ``values`` (S,) is the swept quantity in display units (degrees for angles)."""
    e = torch.nn.functional.normalize(encoded.double(), dim=-1)
    p = torch.nn.functional.normalize(predicted.double(), dim=-1)
    enc2, pred2 = _pca_2d(e, p)
    key = f"steering/{index}"
    return {
        f"{key}/encoded": enc2,
        f"{key}/predicted": pred2,
        f"{key}/values": values.double().numpy(),
        f"{key}/value_label": np.array([value_label], dtype=str),
        f"{key}/title": np.array([title], dtype=str),
    }


def steering_sweeps(arrays: dict[str, np.ndarray]) -> list[dict[str, object]]:
    """The sweeps stored by :func:`steering_arrays`, in index order, as dicts for ``figures.latent_steering``."""
    indices = sorted(
        {int(k.split("/")[1]) for k in arrays if k.startswith("steering/") and k.endswith("/encoded")}
    )
    return [
        {
            "encoded": arrays[f"steering/{i}/encoded"],
            "predicted": arrays[f"steering/{i}/predicted"],
            "values": arrays[f"steering/{i}/values"],
            "value_label": str(arrays[f"steering/{i}/value_label"][0]),
            "title": str(arrays[f"steering/{i}/title"][0]),
        }
        for i in indices
    ]


_LATENT_NAMES = (
    "rotation about x", "rotation about y", "rotation about z", "floor hue", "spot theta", "spot phi",
    "spot hue", "translation x", "translation y", "translation z",
)  # fmt: skip
_ANGLE_COLUMNS = (0, 1, 2, 4, 5)


@torch.no_grad()
def steering_from_features(
    predict: Callable[[Tensor, Tensor], Tensor],
    transform: Callable[[Tensor], Tensor],
    embeddings: Tensor,
    latents: Tensor,
    object_ids: Sequence[str],
    *,
    orbit: bool,
    device: torch.device,
    sweeps: int = 3,
    class_names: dict[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """Latent-steering arrays for the first ``sweeps`` objects of a split (embeddings (N, V, E), latents (N, V, L)).

    Panel titles name each object by :func:`object_display_name` (``class_names``: synset -> name).

    ``orbit=True``: a rendered orbit split (``sie render`` with an orbit factor), where one latent
    sweeps an even grid and the others are fixed: the views are ordered by the swept latent. Otherwise
    the sweep is built from ordinary dataset views, ordered by their rotation angle from view 0 (all
    latents change between such views). The predictor starts from the first view of the order and is
    given the true transformation (``transform``: latents (n, 2, L) -> (n, 1, P)) to every view.
    """
    arrays: dict[str, np.ndarray] = {}
    for i in range(min(sweeps, embeddings.shape[0])):
        lat = latents[i].double()
        if orbit:
            column = int(lat.std(dim=0).argmax())
            order = torch.argsort(lat[:, column])
            values = lat[order, column]
            if column in _ANGLE_COLUMNS:
                values = torch.rad2deg(values)
            name = _LATENT_NAMES[column] if column < len(_LATENT_NAMES) else f"latent {column}"
            label = name + (" (degrees)" if column in _ANGLE_COLUMNS else "")
            title = f"rendered orbit of {object_display_name(object_ids[i], class_names or {})}"
        else:
            q = euler_xyz_to_quaternion(lat[:, 0:3])
            angle = torch.rad2deg(geodesic_angle_quaternion(q[:1], q))
            order = torch.argsort(angle)
            values, label = angle[order], "rotation from view 0 (degrees)"
            title = f"val object {object_display_name(object_ids[i], class_names or {})}: its views by rotation angle"
        pairs = torch.stack((lat[order[:1]].expand(len(order), -1), lat[order]), dim=1)
        g = transform(pairs)[:, 0].float().to(device)
        z0 = embeddings[i, order[:1]].expand(len(order), -1).float().to(device)
        predicted = predict(z0, g).float().cpu()
        arrays.update(steering_arrays(i, embeddings[i, order], predicted, values, label, title))
    return arrays
