"""Real-world meshes and broken runs (issue 15): each case is a mesh or a run the test makes itself.

Covered: a vertex shared by thousands of faces (a cone's apex), a worker that fails or dies on one
object, an OBJ with a single plain material, Latin-1 text, OFF files mixing quads and pentagons,
coordinates near the float64 limit, --skip-bad with the split drawn after skipping, a failed run
(no split files, an unfinished manifest), an output that cannot be written, the same source spelled
differently, and configuration errors led by the flag at fault.
"""

from __future__ import annotations

import errno
import json
import os
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("warp")
pytest.importorskip("trimesh")

import trimesh
from tests.render.fake_meshes import box, crash_on_bad_in_key

from sie.cli import main
from sie.config import RenderConfig
from sie.errors import ConfigError, UsageError
from sie.render.generator import _results, render_dataset
from sie.render.manifest import dataset_identity
from sie.render.mesh import MeshProblem, corner_normals, normalize_mesh, weld
from sie.render.meshio import load_mesh_file, read_off
from sie.render.plan import build_plan
from sie.render.procedural import procedural_mesh
from sie.render.settings import resolve_render_config
from sie.render.sources import normalise_source, open_source

CFG = RenderConfig(classes=2, objects_per_class=20, views=2, size=16, samples_per_pixel=1)


def _folder(root: Path, classes: dict[str, int]) -> Path:
    """``root/CLASS/CLASSk.ply`` boxes of different proportions."""
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            box((1.0, 2.0 + 0.1 * k, 1.0)).export(root / name / f"{name}{k:02d}.ply")
    return root


# ---- 1: normals in memory linear in the mesh, one bad object never takes the run down ------------


def _loop_corner_normals(vertices: np.ndarray, faces: np.ndarray, crease_degrees: float) -> np.ndarray:
    """The definition, corner by corner: the area-weighted sum of the face normals around the corner's
    welded vertex that lie within the crease angle of the corner's face, normalised."""
    v = vertices.astype(np.float64)
    cross = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    unit = cross / np.linalg.norm(cross, axis=1, keepdims=True)
    groups = weld(vertices)
    faces_at: dict[int, list[int]] = {}
    for f, corners in enumerate(groups[faces]):
        for g in corners:
            faces_at.setdefault(int(g), []).append(f)
    cos_crease = np.cos(np.radians(crease_degrees))
    out = np.empty((len(faces), 3, 3))
    for f in range(len(faces)):
        for c in range(3):
            around = np.array(faces_at[int(groups[faces[f, c]])])
            near = around[unit[around] @ unit[f] >= cos_crease]
            total = cross[near].sum(axis=0)
            out[f, c] = total / np.linalg.norm(total)
    return out


@pytest.mark.parametrize("shape", ["cone", "chair", "box", "cylinder"])
def test_corner_normals_equal_the_definition(shape: str) -> None:
    made = {
        "cone": lambda: trimesh.creation.cone(0.5, 1.0, sections=300),  # an apex of 300 faces: the block path
        "box": lambda: trimesh.creation.box(),
        "cylinder": lambda: trimesh.creation.cylinder(0.3, 1.0, sections=24),
    }
    if shape == "chair":
        mesh = procedural_mesh("03001627", 0, 0)
    else:
        raw = made[shape]()
        mesh = normalize_mesh(raw.vertices, raw.faces)
    expected = _loop_corner_normals(mesh.vertices, mesh.faces, 30.0)
    np.testing.assert_allclose(corner_normals(mesh), expected, atol=2e-6)


def test_corner_normals_by_hand_on_a_fold() -> None:
    """Two unit right triangles sharing the edge x in [0, 1], folded by 20 degrees: within a 30 degree
    crease the shared corners get the bisector (0, -sin 10, cos 10); the others keep their face's normal."""
    t = np.radians(20.0)
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, -1, 0], [0, np.cos(t), np.sin(t)]], dtype=np.float64)
    faces = np.array([[0, 1, 3], [0, 2, 1]])
    mesh = normalize_mesh(vertices, faces)
    normals = corner_normals(mesh, 30.0)
    face_a = np.array([0.0, -np.sin(t), np.cos(t)])
    bisector = np.array([0.0, -np.sin(t / 2), np.cos(t / 2)])
    np.testing.assert_allclose(normals[0, 0], bisector, atol=1e-6)  # vertex 0, shared
    np.testing.assert_allclose(normals[0, 1], bisector, atol=1e-6)  # vertex 1, shared
    np.testing.assert_allclose(normals[0, 2], face_a, atol=1e-6)  # vertex 3, face 0 only
    np.testing.assert_allclose(normals[1, 1], [0.0, 0.0, 1.0], atol=1e-6)  # vertex 2, face 1 only
    flat = corner_normals(mesh, 15.0)  # the fold is sharper than the crease: no smoothing
    np.testing.assert_allclose(flat[0, 0], face_a, atol=1e-6)
    np.testing.assert_allclose(flat[1, 0], [0.0, 0.0, 1.0], atol=1e-6)


def test_corner_normals_of_a_5000_sided_cone_need_little_memory() -> None:
    """The apex is shared by 5,000 faces: 2.5e7 corner pairs. Comparing them all at once took 2.6 GB;
    blocks keep the peak at tens of MB (tracemalloc counts numpy's buffers)."""
    raw = trimesh.creation.cone(0.5, 1.0, sections=5000)
    mesh = normalize_mesh(raw.vertices, raw.faces)
    tracemalloc.start()
    try:
        normals = corner_normals(mesh)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 150e6, f"corner_normals peaked at {peak / 1e6:.0f} MB"
    # A few apex corners against the definition, computed over the apex's 5,000 faces.
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    unit = cross / np.linalg.norm(cross, axis=1, keepdims=True)
    groups = weld(mesh.vertices)
    counts = np.bincount(groups[f].ravel())
    top = np.argsort(counts)[-2:]  # the apex and the base centre, 5,000 faces each
    for vertex in top:
        around = np.flatnonzero((groups[f] == vertex).any(axis=1))
        for face in around[:: len(around) // 7]:
            corner = int(np.flatnonzero(groups[f[face]] == vertex)[0])
            near = around[unit[around] @ unit[face] >= np.cos(np.radians(30.0))]
            total = cross[near].sum(axis=0)
            np.testing.assert_allclose(normals[face, corner], total / np.linalg.norm(total), atol=2e-6)


def test_an_error_while_loading_one_object_is_that_objects_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sie.render.sources import FolderSource

    root = _folder(tmp_path / "meshes", {"a": 3, "b": 2})
    real_load = FolderSource.load

    def load(self: FolderSource, ref: object) -> object:
        if str(getattr(ref, "locator", "")).endswith("a01.ply"):
            raise MemoryError("simulated")
        return real_load(self, ref)  # type: ignore[arg-type]

    monkeypatch.setattr(FolderSource, "load", load)
    cfg = replace(CFG, source=f"folder:{root}")
    with pytest.raises(UsageError, match=r"a01\.ply: cannot load it \(MemoryError: simulated\)") as err:
        render_dataset(cfg, tmp_path / "out", workers=1, progress=False)
    assert "--skip-bad" in str(err.value) and "\n" not in str(err.value)
    summary = render_dataset(replace(cfg, skip_bad=True), tmp_path / "out", workers=1, progress=False)
    manifest = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert summary.complete and summary.skipped == 1
    assert [s["object"] for s in manifest["skipped_objects"]] == ["a/a01"]


@pytest.mark.slow
def test_a_render_process_that_dies_fails_only_its_object(tmp_path: Path) -> None:
    """A worker killed mid-object (here: it exits; in life: the OOM killer) broke the whole pool and
    the run. Now the objects in flight are rendered again one process each; only the culprit fails."""
    root = _folder(tmp_path / "meshes", {"a": 3, "bad": 2, "c": 3})
    cfg = replace(CFG, source=f"folder:{root}", classes=3, skip_bad=True)
    todo = build_plan(open_source(cfg.source), cfg).objects
    results = list(_results(todo, cfg, tmp_path / "out", "warp", "cpu", 2, work=crash_on_bad_in_key))
    assert sorted(r.key for r in results) == sorted(o.key for o in todo)  # every object has its result
    bad = sorted(r.key for r in results if r.status == "bad")
    assert bad == ["bad/bad00", "bad/bad01"]
    assert {r.status for r in results if not r.key.startswith("bad/")} == {"rendered"}
    reason = next(r.reason for r in results if r.key == "bad/bad00")
    assert "bad00.ply: the render process died while rendering it" in reason


# ---- 2 and 3: colours of a single-material OBJ, Latin-1 text, mixed polygons in OFF ----------------


def _obj_text(mesh: object, materials: list[str]) -> str:
    """An OBJ of ``mesh`` whose faces use ``materials`` in turn (by halves when there are two)."""
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)  # type: ignore[attr-defined]
    lines = ["mtllib m.mtl"] + [f"v {x} {y} {z}" for x, y, z in vertices]
    half = len(faces) // len(materials)
    for k, name in enumerate(materials):
        lines.append(f"usemtl {name}")
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces[k * half : (k + 1) * half]]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("materials", [["green"], ["green", "red"]])
def test_material_colours_come_through_for_any_material_count(tmp_path: Path, materials: list[str]) -> None:
    (tmp_path / "m.mtl").write_text("newmtl green\nKd 0 1 0\nnewmtl red\nKd 1 0 0\n")
    path = tmp_path / "cube.obj"
    path.write_text(_obj_text(box(), materials))
    mesh = load_mesh_file(path)
    colours = {tuple(np.round(c, 3)) for c in mesh.face_albedo.tolist()}
    expected = {(0.0, 1.0, 0.0)} | ({(1.0, 0.0, 0.0)} if "red" in materials else set())
    assert colours == expected


def test_latin1_obj_and_mtl_are_read(tmp_path: Path) -> None:
    (tmp_path / "m.mtl").write_bytes("# mat\xe9riau vert\nnewmtl green\nKd 0 1 0\n".encode("latin-1"))
    path = tmp_path / "cube.obj"
    path.write_bytes(("# mod\xe8le fait \xe0 la main\n" + _obj_text(box(), ["green"])).encode("latin-1"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    mesh = load_mesh_file(path)
    assert mesh.num_faces == 12 and mesh.watertight
    np.testing.assert_allclose(mesh.face_albedo, np.tile([0.0, 1.0, 0.0], (12, 1)))


def _pentagonal_prism_off(header: str = "OFF\n10 7 0\n", colour: str = "") -> str:
    angles = np.linspace(0.0, 2 * np.pi, 6)[:-1]
    ring = [(np.cos(a), np.sin(a)) for a in angles]
    vertices = [f"{x:.6f} {y:.6f} 0" for x, y in ring] + [f"{x:.6f} {y:.6f} 1.5" for x, y in ring]
    faces = ["5 4 3 2 1 0" + colour, "5 5 6 7 8 9" + colour]
    faces += [f"4 {i} {(i + 1) % 5} {(i + 1) % 5 + 5} {i + 5}{colour}" for i in range(5)]
    return header + "# a comment\n" + "\n".join(vertices + faces) + "\n"


def test_off_mixing_quads_and_pentagons_is_read(tmp_path: Path) -> None:
    path = tmp_path / "prism.off"
    path.write_text(_pentagonal_prism_off())
    mesh = load_mesh_file(path)
    assert mesh.num_faces == 2 * 3 + 5 * 2 and mesh.watertight  # pentagons -> 3 triangles, quads -> 2
    lo, hi = mesh.bounds
    assert np.linalg.norm(hi - lo) == pytest.approx(1.0, abs=1e-6)


def test_read_off_by_hand() -> None:
    vertices, faces, colours = read_off(_pentagonal_prism_off("OFF10 7 0\n", colour=" 255 0 0"))
    assert vertices.shape == (10, 3) and faces.shape == (16, 3) and colours is not None
    assert faces[:3].tolist() == [[4, 3, 2], [4, 2, 1], [4, 1, 0]]  # a fan around the first corner
    np.testing.assert_array_equal(colours, np.tile([255.0, 0.0, 0.0], (16, 1)))
    _, _, none = read_off("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    assert none is None
    with pytest.raises(ValueError, match="2 vertices and 1 faces announced, but only 1 lines follow"):
        read_off("OFF\n2 1 0\n0 0 0\n")
    with pytest.raises(ValueError, match="line 5: a face of 4 corners with 3 indices"):
        read_off("OFF 3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n")


def test_a_broken_off_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.off"
    path.write_text(_pentagonal_prism_off().replace("OFF\n10 7 0", "OFF\n10 9 0"))  # 2 faces missing
    with pytest.raises(
        MeshProblem, match=r"broken\.off: cannot read it as an OFF mesh \(10 vertices and 9 faces"
    ):
        load_mesh_file(path)


# ---- 4: coordinates near the float64 limit ---------------------------------------------------------


def _huge_off(path: Path) -> None:
    cube = box((1.0, 1.0, 1.0))
    vertices = np.sign(cube.vertices) * 1e308
    lines = ["OFF", f"{len(vertices)} {len(cube.faces)} 0"]
    lines += [" ".join(repr(float(x)) for x in v) for v in vertices]
    lines += ["3 " + " ".join(str(i) for i in f) for f in cube.faces]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_coordinates_that_overflow_are_refused_by_name(tmp_path: Path) -> None:
    root = _folder(tmp_path / "meshes", {"a": 2, "b": 2})
    _huge_off(root / "a" / "huge.off")
    with pytest.raises(MeshProblem, match=r"huge\.off: coordinates span \[-1e\+308, 1e\+308\].*non-finite"):
        load_mesh_file(root / "a" / "huge.off")
    cfg = replace(CFG, source=f"folder:{root}")
    with pytest.raises(UsageError, match=r"huge\.off: coordinates span"):
        render_dataset(cfg, tmp_path / "out", workers=1, progress=False)
    assert not (tmp_path / "out" / "a" / "huge").exists()
    summary = render_dataset(replace(cfg, skip_bad=True), tmp_path / "out", workers=1, progress=False)
    assert summary.complete and summary.skipped == 1 and summary.rendered + summary.already_done == 4


# ---- 5 and 6: --skip-bad splits after skipping; a failed run writes no split files -----------------


def _with_garbage(root: Path, name: str, good: int, bad: int) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    for k in range(bad):
        (root / name / f"{name}{k:02d}.ply").write_bytes(b"garbage\x00\xff" * 10)
    for k in range(bad, bad + good):
        box((1.0, 2.0 + 0.1 * k, 1.0)).export(root / name / f"{name}{k:02d}.ply")


@pytest.mark.parametrize(("total", "bad", "train", "val"), [(10, 5, 4, 1), (11, 9, 1, 1)])
def test_skip_bad_draws_the_split_among_the_usable_objects(
    tmp_path: Path, total: int, bad: int, train: int, val: int
) -> None:
    """The objects that break are the planned val objects of class a and some train ones: drawn before
    skipping, the split left the class without val, dropped it and left its folders in no split."""
    root = _folder(tmp_path / "meshes", {"a": total, "b": 4})
    cfg = replace(CFG, source=f"folder:{root}", skip_bad=True)
    planned = [o for o in build_plan(open_source(cfg.source), cfg).objects if o.ref.class_id == "a"]
    victims = [o for o in planned if o.split == "val"] + [o for o in planned if o.split == "train"]
    for victim in victims[:bad]:
        Path(victim.ref.locator).write_bytes(b"garbage\x00\xff" * 10)
    out = tmp_path / "out"
    summary = render_dataset(cfg, out, workers=1, progress=False)
    manifest = json.loads((out / "dataset.json").read_text())
    assert summary.complete and summary.skipped == bad and manifest["skipped_classes"] == []
    a = next(c for c in manifest["classes"] if c["synset"] == "a")
    assert (a["train"], a["val"]) == (train, val)
    listed = {str(e).strip("/") for s in ("train", "val") for e in np.load(out / f"{s}_images.npy")}
    on_disk = {f"{p.parent.name}/{p.name}" for p in out.glob("*/*") if p.is_dir() and p.parent.name in "ab"}
    assert listed == on_disk and len(listed) == total - bad + 4  # no rendered object outside every split


def test_a_run_that_keeps_no_class_writes_no_split_files_and_is_not_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "meshes"
    _with_garbage(root, "a", 1, 3)
    _with_garbage(root, "b", 1, 3)
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="no class keeps the objects a split needs") as err:
        render_dataset(replace(CFG, source=f"folder:{root}", skip_bad=True), out, workers=1, progress=False)
    assert "a: 1 of its 4 objects left after skipping 3" in str(err.value)
    assert not list(out.glob("*_images.npy")) and not list(out.glob("*_labels.npy"))
    assert json.loads((out / "dataset.json").read_text())["status"] == "in progress"
    code = main(["data", "check", str(out), "--quiet", "--workers", "1"])
    printed = capsys.readouterr().out
    assert code == 1 and "unfinished render: status is 'in progress'" in printed
    assert "no problems found" not in printed


# ---- 7: an output that cannot be written -----------------------------------------------------------


def _render_cli(out: Path, root: Path, *extra: str) -> list[str]:
    return [
        "render", str(out), "--preset", "tiny", "--classes", "2", "--objects-per-class", "2", "--views", "2",
        "--size", "16", "--quiet", "--workers", "1", "--source", f"folder:{root}", *extra,
    ]  # fmt: skip


def test_an_output_path_under_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _folder(tmp_path / "meshes", {"a": 2, "b": 2})
    (tmp_path / "file").write_text("not a folder")
    code = main(_render_cli(tmp_path / "file" / "out", root))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert (
        err[0]
        == f"sie render: error: {tmp_path / 'file' / 'out'}: cannot write the dataset there (Not a directory)"
    )


def test_a_full_disk_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sie.render.writer as writer

    def full(file: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))

    root = _folder(tmp_path / "meshes", {"a": 2, "b": 2})
    monkeypatch.setattr(writer.np, "save", full)
    code = main(_render_cli(tmp_path / "out", root))
    err = [line for line in capsys.readouterr().err.splitlines() if " sie: " not in line]
    assert code == 1 and len(err) == 1, err
    assert "writing the dataset failed (" in err[0] and "latent_0.npy: No space left on device)" in err[0]
    assert "run the same command again to resume" in err[0]


# ---- 8: the same source, spelled differently -------------------------------------------------------


def test_the_same_source_spelled_differently_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _folder(tmp_path / "meshes", {"a": 2, "b": 2})
    out = tmp_path / "out"
    cfg = replace(CFG, source=f"folder:{root}")
    render_dataset(cfg, out, workers=1, progress=False)
    monkeypatch.chdir(tmp_path)
    for spelling in ("folder:meshes", "folder:meshes/", f"folder:{root}/", "folder:./meshes//"):
        assert normalise_source(spelling) == f"folder:{root}"
        summary = render_dataset(replace(cfg, source=spelling), out, workers=1, progress=False)
        assert summary.complete and summary.rendered == 0
    other = _folder(tmp_path / "other", {"a": 2, "b": 2})
    with pytest.raises(UsageError, match="holds a different dataset"):
        render_dataset(replace(cfg, source=f"folder:{other}"), out, workers=1, progress=False)


def test_a_dataset_from_before_the_normalisation_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _folder(tmp_path / "meshes", {"a": 2, "b": 2})
    monkeypatch.chdir(tmp_path)
    cfg = replace(CFG, source="folder:meshes/")
    out = tmp_path / "out"
    render_dataset(cfg, out, workers=1, progress=False)
    manifest = json.loads((out / "dataset.json").read_text())
    plan = build_plan(open_source(cfg.source), cfg)
    manifest["identity"] = dataset_identity(cfg, plan, as_spelled=True)  # what such a dataset recorded
    manifest["config"]["source"] = "folder:meshes/"
    (out / "dataset.json").write_text(json.dumps(manifest))
    assert render_dataset(cfg, out, workers=1, progress=False).complete


# ---- 9: configuration messages name the flag at fault ----------------------------------------------


_RENDER_FLAG_NAMES = {
    "render.objects_per_class": "--objects-per-class",
    "render.class_sizes": "--objects-per-class",  # what sie render sets with it
    "render.orbit_factor": "--orbit",
    "render.source": "--source",
}


@pytest.mark.parametrize(
    ("flags", "overrides", "start"),
    [
        (
            {"render.objects_per_class": 0, "render.class_sizes": "uniform", "render.source": "procedural"},
            [],
            "--objects-per-class: ",
        ),
        ({"render.workers": -2, "render.source": "procedural", "render.classes": 3}, [], "--workers: "),
        ({"render.views": 0, "render.source": "procedural"}, [], "--views: "),
        ({"render.orbit_factor": "spin", "render.source": "procedural"}, [], "--orbit: "),
        ({"render.source": "procedural"}, ["render.val_fraction=2"], "--set render.val_fraction=2: "),
        (
            {"render.source": "procedural"},
            ["render.rotation_range=[1,0]"],
            "--set render.rotation_range=[1,0]: ",
        ),
    ],
)
def test_configuration_errors_are_led_by_the_flag_at_fault(
    flags: dict[str, object], overrides: list[str], start: str
) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_render_config("tiny", None, overrides, flags, _RENDER_FLAG_NAMES)
    message = str(err.value)
    assert message.startswith(start), message
    assert "--class-sizes" not in message and "--source" not in message
