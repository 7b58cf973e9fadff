"""The two backends draw the same images; ``render.backend=auto`` picks one by device and says why."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from sie.config import RenderConfig
from sie.errors import UsageError
from sie.render import backends
from sie.render.backends import RenderSettings, backend_status, create_renderer, resolve_backend_name
from sie.render.generator import render_dataset
from sie.render.mesh import normalize_mesh
from sie.render.procedural import procedural_mesh
from sie.render.scene import views_from_latents


def _need(*names: str) -> None:
    for name in names:
        problem = backend_status()[name]
        if problem is not None:
            pytest.skip(f"backend {name} is not installed: {problem}")


def _bumpy(rings: int = 40, segments: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A lumpy, stretched sphere: smooth shading everywhere, self-shadowing bumps, no symmetry."""
    theta = np.linspace(0.0, np.pi, rings + 1)
    phi = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    tt, pp = np.meshgrid(theta, phi, indexing="ij")
    dirs = np.stack([np.sin(tt) * np.cos(pp), np.sin(tt) * np.sin(pp), np.cos(tt)], axis=-1)
    bumps = 0.08 * np.sin(3 * dirs[..., 0] + 1) * np.cos(4 * dirs[..., 1]) + 0.05 * np.sin(5 * dirs[..., 2])
    vertices = (dirs * (1.0 + bumps)[..., None] * np.array([1.0, 0.6, 0.45])).reshape(-1, 3)
    r, c = np.meshgrid(np.arange(rings), np.arange(segments), indexing="ij")
    a, b = r * segments + c, r * segments + (c + 1) % segments
    faces = np.concatenate(
        [
            np.stack([a, b, b + segments], -1).reshape(-1, 3),
            np.stack([a, b + segments, a + segments], -1).reshape(-1, 3),
        ]
    )
    return vertices, faces


def _latents(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.uniform(-np.pi / 2, np.pi / 2, (count, 3)),
            rng.random(count),
            rng.uniform(0, np.pi / 4, count),
            rng.uniform(0, 2 * np.pi, count),
            rng.random(count),
            rng.uniform(-0.5, 0.5, (count, 3)),  # translated: the -T variant exercises the object frame
        ]
    )


@pytest.mark.parametrize("antialias", ["adaptive", "full"])
@pytest.mark.parametrize("shape", ["chair", "bumpy"])
def test_warp_and_embree_give_the_same_images(shape: str, antialias: str) -> None:
    _need("warp", "embree")
    mesh = procedural_mesh("03001627", 3, 0) if shape == "chair" else normalize_mesh(*_bumpy())
    views = views_from_latents(_latents(6, seed=1))
    settings = RenderSettings(size=48, samples_per_pixel=4, antialias=antialias)  # type: ignore[arg-type]
    out = {}
    for name in ("warp", "embree"):
        renderer = create_renderer(name, settings, device="cpu")
        renderer.set_mesh(mesh)
        out[name] = renderer.render(views, object_mask=True)
    a, b = out["warp"], out["embree"]
    assert a.object_mask is not None and b.object_mask is not None
    assert a.object_mask.any()
    diff = np.abs(a.images.astype(int) - b.images.astype(int)).max(axis=-1)
    # Same formulas in float32; a ray that grazes an edge may land on the other side in one backend.
    assert diff.mean() < 0.05, diff.mean()
    assert (diff > 2).mean() < 0.002
    assert (a.object_mask != b.object_mask).mean() < 0.001


def test_embree_runs_on_the_cpu_only() -> None:
    _need("embree")
    with pytest.raises(UsageError, match="CPU only"):
        create_renderer("embree", RenderSettings(size=16), device="cuda")


def test_auto_takes_warp_first_and_embree_when_warp_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(backends, "backend_status", lambda: {"warp": None, "embree": None})
    assert resolve_backend_name("auto", "cpu") == "warp"
    assert resolve_backend_name("auto", "cuda:0") == "warp"
    assert resolve_backend_name("embree", "cpu") == "embree"
    missing = "the warp backend needs NVIDIA Warp: pip install 'sie[render]'"
    monkeypatch.setattr(backends, "backend_status", lambda: {"warp": missing, "embree": None})
    with caplog.at_level(logging.INFO, logger="sie"):
        assert resolve_backend_name("auto", "cpu") == "embree"
    assert "using embree" in caplog.text and "sie[render]" in caplog.text
    with pytest.raises(UsageError, match="no render backend is available for device 'cuda'"):
        resolve_backend_name("auto", "cuda")
    with pytest.raises(UsageError, match=r"render\.backend='warp' cannot be used here"):
        resolve_backend_name("warp", "cpu")
    with pytest.raises(UsageError, match="unknown"):
        resolve_backend_name("mitsuba", "cpu")


def test_embree_datasets_are_deterministic_across_workers(tmp_path: Path) -> None:
    _need("embree")
    cfg = RenderConfig(
        classes=2, objects_per_class=2, views=3, size=24, samples_per_pixel=2, backend="embree"
    )
    files = []
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        summary = render_dataset(cfg, root, workers=workers, progress=False)
        assert summary.backend["name"] == "embree"
        assert json.loads((root / "dataset.json").read_text())["backend"]["name"] == "embree"
        files.append({p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.jpg"))})
    assert files[0] and files[0] == files[1]


@pytest.mark.parametrize("name", ["warp", "embree"])
def test_images_do_not_depend_on_how_views_are_batched(name: str) -> None:
    _need(name)
    latents = _latents(7, seed=2)
    renderer = create_renderer(name, RenderSettings(size=32, samples_per_pixel=4), device="cpu")
    renderer.set_mesh(procedural_mesh("02958343", 1, 0))
    whole = renderer.render(views_from_latents(latents)).images
    parts = [renderer.render(views_from_latents(latents[i : i + 3])).images for i in range(0, 7, 3)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))


@pytest.mark.parametrize(("spp", "crease"), [(1, 30.0), (4, 0.0)])
def test_backends_agree_with_one_ray_and_with_flat_shading(spp: int, crease: float) -> None:
    _need("warp", "embree")
    mesh = normalize_mesh(*_bumpy(24, 32))
    views = views_from_latents(_latents(4, seed=5))
    settings = RenderSettings(size=40, samples_per_pixel=spp, crease_degrees=crease)
    images = []
    for name in ("warp", "embree"):
        renderer = create_renderer(name, settings, device="cpu")
        renderer.set_mesh(mesh)
        images.append(renderer.render(views).images.astype(int))
    diff = np.abs(images[0] - images[1]).max(axis=-1)
    assert diff.mean() < 0.05 and (diff > 2).mean() < 0.002
