"""Where objects come from: procedural templates, ShapeNetCore v2, ModelNet, or any folder of meshes.

``--source`` spellings: ``procedural`` | ``shapenet:DIR`` | ``modelnet:DIR`` | ``folder:DIR``.

=============  ===========================================================  ==================
source         layout                                                       class dir / up
=============  ===========================================================  ==================
procedural     none: objects are regenerated from (class, instance, seed)   ShapeNet synset
shapenet:DIR   ``DIR/SYNSET/MODEL/models/model_normalized.obj``             synset / +Y
modelnet:DIR   ``DIR/CLASS/{train,test}/*.off`` (ModelNet40 and 10)         class name / +Z
folder:DIR     ``DIR/CLASS/*.{obj,off,ply,stl,glb,gltf}``                   class name / by type
=============  ===========================================================  ==================

A class folder without any usable file is a :class:`SourceProblem`; a single object that cannot be
loaded raises :class:`~sie.render.mesh.MeshProblem` naming its file when it is rendered.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sie.errors import UsageError
from sie.render.mesh import Mesh
from sie.render.meshio import MESH_SUFFIXES, UpAxis, load_mesh_file
from sie.render.procedural import CLASSES, class_by_synset, procedural_mesh, procedural_object_id
from sie.seeding import derive_seed

__all__ = [
    "FolderSource",
    "ModelNetSource",
    "ObjectRef",
    "ObjectSource",
    "ProceduralSource",
    "ShapeNetSource",
    "SourceProblem",
    "normalise_source",
    "open_source",
]


@dataclass(frozen=True)
class ObjectRef:
    """One object: its class and object directory names in the output, and where it comes from.

    ``locator`` is a file path for mesh sources and the instance number for procedural objects.
    """

    class_id: str
    object_id: str
    locator: str


@dataclass(frozen=True)
class SourceProblem:
    """A class of the source that cannot be used, with the folder and the reason."""

    class_id: str
    path: str
    reason: str


class ObjectSource(ABC):
    """A set of classes, each with objects that load as normalised meshes."""

    spec: str
    problems: list[SourceProblem]

    @abstractmethod
    def class_ids(self) -> list[str]:
        """Usable classes, sorted."""

    def class_name(self, class_id: str) -> str:
        """Human-readable name of a class (defaults to its id)."""
        return class_id

    @abstractmethod
    def available(self, class_id: str) -> int | None:
        """How many objects the class offers (None = as many as asked for)."""

    @abstractmethod
    def objects(self, class_id: str, count: int | None, seed: int) -> list[ObjectRef]:
        """``count`` objects of the class (all when None), a seeded choice when there are more, sorted."""

    @abstractmethod
    def load(self, ref: ObjectRef) -> Mesh:
        """The normalised mesh; MeshProblem (naming the file) when it cannot be rendered."""

    def describe(self) -> dict[str, object]:
        """What the manifest records about the source."""
        return {"spec": self.spec}


class ProceduralSource(ObjectSource):
    """The 55 built-in class templates; any number of objects per class, regenerated from seeds."""

    def __init__(self, seed: int) -> None:
        self.spec = "procedural"
        self.seed = seed
        self.problems = []

    def class_ids(self) -> list[str]:
        return sorted(c.synset for c in CLASSES)

    def class_name(self, class_id: str) -> str:
        return class_by_synset(class_id).name

    def available(self, class_id: str) -> int | None:
        return None

    def objects(self, class_id: str, count: int | None, seed: int) -> list[ObjectRef]:
        if count is None:
            raise ValueError("procedural classes need an explicit object count")
        refs = [
            ObjectRef(class_id, procedural_object_id(class_id, i, self.seed), str(i)) for i in range(count)
        ]
        return sorted(refs, key=lambda r: r.object_id)

    def load(self, ref: ObjectRef) -> Mesh:
        return procedural_mesh(ref.class_id, int(ref.locator), self.seed)

    def describe(self) -> dict[str, object]:
        return {"spec": self.spec, "templates": len(CLASSES), "shape_seed": self.seed}


class _MeshFolderSource(ObjectSource):
    """Shared logic of the file-based sources: a scan into {class: [(object id, path)]}, then loading."""

    def __init__(self, spec: str, root: Path, up_axis: UpAxis | None, check_watertight: bool) -> None:
        if not root.is_dir():
            raise UsageError(f"--source {spec}: {root} is not a directory")
        self.spec = spec
        self.root = root
        self.up_axis = up_axis
        self.check_watertight = check_watertight
        self.problems = []
        self._files: dict[str, list[tuple[str, Path]]] = {}
        self._scan()
        if not self._files:
            found = ", ".join(p.reason for p in self.problems[:3]) or "nothing"
            raise UsageError(
                f"--source {spec}: no usable class folder in {root} ({self._layout()}); found {found}"
            )

    @abstractmethod
    def _layout(self) -> str: ...

    @abstractmethod
    def _scan(self) -> None: ...

    def _add_class(self, class_id: str, folder: Path, files: list[tuple[str, Path]]) -> None:
        if files:
            self._files[class_id] = sorted(files)
        else:
            self.problems.append(
                SourceProblem(class_id, str(folder), f"no mesh files in {folder} ({self._layout()})")
            )

    def class_ids(self) -> list[str]:
        return sorted(self._files)

    def available(self, class_id: str) -> int | None:
        return len(self._files[class_id])

    def objects(self, class_id: str, count: int | None, seed: int) -> list[ObjectRef]:
        files = self._files[class_id]
        chosen = list(range(len(files)))
        if count is not None and count < len(files):
            rng = np.random.default_rng(derive_seed(seed, "subset", class_id))
            chosen = sorted(rng.choice(len(files), size=count, replace=False).tolist())
        return [ObjectRef(class_id, files[i][0], str(files[i][1])) for i in chosen]

    def load(self, ref: ObjectRef) -> Mesh:
        return load_mesh_file(Path(ref.locator), self.up_axis, check_watertight=self.check_watertight)

    def describe(self) -> dict[str, object]:
        return {
            "spec": self.spec,
            "root": str(self.root.resolve()),
            "up_axis": self.up_axis or "by file type",
        }


def _unique_ids(paths: list[Path]) -> list[tuple[str, Path]]:
    """Object ids from file stems; a stem shared by several files gets its suffix appended."""
    stems = [p.stem for p in paths]
    return [
        (p.stem if stems.count(p.stem) == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}", p) for p in paths
    ]


class ShapeNetSource(_MeshFolderSource):
    """ShapeNetCore v2: ``ROOT/SYNSET/MODEL/models/model_normalized.obj`` (+Y up, as in the files)."""

    MODEL_FILE = Path("models") / "model_normalized.obj"

    def __init__(self, spec: str, root: Path, check_watertight: bool = True) -> None:
        super().__init__(spec, root, "y", check_watertight)
        self._names = self._read_taxonomy()

    def _layout(self) -> str:
        return "expected SYNSET/MODEL/models/model_normalized.obj"

    def _scan(self) -> None:
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            models = sorted(p for p in folder.iterdir() if p.is_dir())
            # A model folder without its OBJ stays listed: rendering it reports the missing file.
            self._add_class(folder.name, folder, [(m.name, m / self.MODEL_FILE) for m in models])

    def _read_taxonomy(self) -> dict[str, str]:
        names: dict[str, str] = {}
        taxonomy = self.root / "taxonomy.json"
        if taxonomy.is_file():
            try:
                for entry in json.loads(taxonomy.read_text()):
                    names[str(entry["synsetId"])] = str(entry["name"]).split(",")[0]
            except (ValueError, KeyError, TypeError) as exc:
                raise UsageError(
                    f"--source {self.spec}: {taxonomy} is not ShapeNet's taxonomy.json ({exc})"
                ) from None
        return names

    def class_name(self, class_id: str) -> str:
        if class_id in self._names:
            return self._names[class_id]
        try:
            return class_by_synset(class_id).name
        except KeyError:
            return class_id


class ModelNetSource(_MeshFolderSource):
    """ModelNet40 / ModelNet10: ``ROOT/CLASS/{train,test}/*.off`` (+Z up); both parts are used."""

    def __init__(self, spec: str, root: Path, check_watertight: bool = True) -> None:
        super().__init__(spec, root, "z", check_watertight)

    def _layout(self) -> str:
        return "expected CLASS/train/*.off and CLASS/test/*.off"

    def _scan(self) -> None:
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = [
                f
                for part in ("train", "test")
                for f in sorted((folder / part).glob("*.off"))
                if (folder / part).is_dir()
            ]
            self._add_class(folder.name, folder, _unique_ids(files))


class FolderSource(_MeshFolderSource):
    """Any ``ROOT/CLASS/*.{obj,off,ply,stl,glb,gltf}``; the up axis follows the file type unless given."""

    def _layout(self) -> str:
        return "expected CLASS/*.obj|off|ply|stl|glb|gltf"

    def _scan(self) -> None:
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in MESH_SUFFIXES)
            self._add_class(folder.name, folder, _unique_ids(files))


def normalise_source(spec: str) -> str:
    """``spec`` with its folder made absolute and without a trailing slash (``~`` expanded, links kept
    as spelled): ``folder:meshes/`` run in /data and ``folder:/data/meshes`` give the same string.
    Other spellings (``procedural``, anything malformed) come back unchanged."""
    kind, sep, path = spec.partition(":")
    if not sep or not path or kind not in ("shapenet", "modelnet", "folder"):
        return spec
    return f"{kind}:{os.path.abspath(os.path.expanduser(path))}"


def open_source(
    spec: str, *, seed: int = 0, up_axis: str = "auto", check_watertight: bool = True
) -> ObjectSource:
    """Open a source from its ``--source`` spelling (see the module docstring).

    Args:
        spec: ``procedural``, ``shapenet:DIR``, ``modelnet:DIR`` or ``folder:DIR``.
        seed: the generator seed (procedural shapes depend on it).
        up_axis: ``auto`` (by source / file type), ``y`` or ``z``; only the folder source uses it.
        check_watertight: record whether each loaded mesh is watertight.
    """
    kind, _, path = spec.partition(":")
    if kind == "procedural" and not path:
        return ProceduralSource(seed)
    if kind in ("shapenet", "modelnet", "folder") and path:
        root = Path(path).expanduser()
        if kind == "shapenet":
            return ShapeNetSource(spec, root, check_watertight)
        if kind == "modelnet":
            return ModelNetSource(spec, root, check_watertight)
        axis: UpAxis | None = None if up_axis == "auto" else ("y" if up_axis == "y" else "z")
        return FolderSource(spec, root, axis, check_watertight)
    raise UsageError(f"--source {spec!r}: expected procedural, shapenet:DIR, modelnet:DIR or folder:DIR")
