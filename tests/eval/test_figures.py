"""sie.eval.figures on synthetic arrays: every figure renders to a non-empty, non-uniform PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from sie.eval import figures


def assert_png_has_content(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 2000
    with Image.open(path) as img:
        assert img.format == "PNG"
        pixels = np.asarray(img.convert("L"))
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 5  # not a blank canvas


def images(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 255, size=(*shape, 16, 16, 3), dtype=np.uint8)


def test_training_curves(tmp_path: Path) -> None:
    runs = {
        "sie": [{"step": s, "loss": 5.0 / (s + 1), "loss/inv": 0.1 * s, "lr": 1e-3} for s in range(20)],
        "vicreg": [{"step": s, "loss": 4.0 / (s + 1), "flag": True} for s in range(20)],
    }
    assert_png_has_content(figures.save_png(figures.training_curves(runs), tmp_path / "curves.png"))
    empty = figures.save_png(
        figures.training_curves({"x": [{"step": 0, "note": "text"}]}), tmp_path / "empty.png"
    )
    assert empty.is_file()


def test_training_curves_keep_one_colour_per_run_across_panels() -> None:
    # "vicreg" has no loss/inv: in that panel "supervised" must keep its own colour, not take vicreg's.
    runs = {
        "sie": [{"step": s, "loss": 1.0, "loss/inv": 0.1} for s in range(5)],
        "vicreg": [{"step": s, "loss": 2.0} for s in range(5)],
        "supervised": [{"step": s, "loss": 3.0, "loss/inv": 0.3} for s in range(5)],
    }
    fig = figures.training_curves(runs)
    colours: dict[str, set[tuple[float, ...]]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            colours.setdefault(str(line.get_label()), set()).add(tuple(line.get_color()))
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({next(iter(c)) for c in colours.values()}) == 3


def test_retrieval_panel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    fig = figures.retrieval_panel(
        images(rng, 2),
        images(rng, 2, 4),
        images(rng, 2, 4),
        np.array([[True, False, True, True], [False, False, True, False]]),
        [[f"{a}°" for a in (0, 30, 60, 90)]] * 2,
    )
    assert_png_has_content(figures.save_png(fig, tmp_path / "retrieval.png"))


def test_latent_steering(tmp_path: Path) -> None:
    t = np.linspace(-1.5, 1.5, 12)
    encoded = np.stack((np.cos(t), np.sin(t)), 1)
    sweeps = [
        {"encoded": encoded, "predicted": encoded * 1.1 + 0.05, "values": np.degrees(t),
         "value_label": "rotation about x (degrees)", "title": f"orbit {i}"}
        for i in range(2)
    ]  # fmt: skip
    assert_png_has_content(figures.save_png(figures.latent_steering(sweeps), tmp_path / "steering.png"))


def test_error_along_orbits(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    angles = rng.uniform(-np.pi, np.pi, (500, 3))
    errors = 20 + 10 * np.abs(angles[:, 0]) + rng.normal(size=500)
    fig = figures.error_along_orbits({"full": (angles, errors), "equi": (angles, errors * 0.8)})
    assert_png_has_content(figures.save_png(fig, tmp_path / "orbits.png"))


def test_dataset_preview(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    fig = figures.dataset_preview(
        images(rng, 3, 5), ["chair", "table", "car"], ["v0", "v1", "v2", "v3", "v4"]
    )
    assert_png_has_content(figures.save_png(fig, tmp_path / "preview.png"))


def test_training_curves_show_every_loss_term_before_other_keys() -> None:
    terms = [f"loss/term{k}" for k in range(9)]  # more loss terms than max_panels
    runs = {
        "sie": [{"step": s, "loss": 1.0, "online/top1": 0.1, **dict.fromkeys(terms, 0.5)} for s in range(3)]
    }
    titles = [ax.get_title() for ax in figures.training_curves(runs, max_panels=8).axes if ax.get_title()]
    assert titles == ["loss", *terms]  # every loss term; "online/top1" only when there is room
    few = {"sie": [{"step": s, "loss": 1.0, "online/top1": 0.1} for s in range(3)]}
    assert [ax.get_title() for ax in figures.training_curves(few).axes if ax.get_title()] == [
        "loss",
        "online/top1",
    ]


def reference_lines(ax) -> list[tuple[float, str]]:  # type: ignore[no-untyped-def]
    """(y value, text) of the labelled reference lines drawn in ``ax``."""
    lines = [float(line.get_ydata()[0]) for line in ax.get_lines() if line.get_gid() == "reference"]
    texts = [t.get_text() for t in ax.texts if t.get_gid() == "reference"]
    return list(zip(lines, texts, strict=True))


def test_training_curves_draw_the_constant_predictor_floor_in_the_online_rotation_panel() -> None:
    runs = {"sie": [{"step": s, "loss": 1.0, "probe/rot_r2_equi": 0.05 * s} for s in range(6)]}
    refs = {"probe/rot_r2_equi": [("constant predictor 0.211", 0.211)]}
    fig = figures.training_curves(runs, references=refs)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert reference_lines(panels["probe/rot_r2_equi"]) == [(0.211, "constant predictor 0.211")]
    assert reference_lines(panels["loss"]) == []
    # The reference stays out of the run legend.
    two = {**runs, "vicreg": [{"step": s, "loss": 2.0} for s in range(6)]}
    legend = figures.training_curves(two, references=refs).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["sie", "vicreg"]


def test_error_along_orbits_draws_the_reference_errors_in_every_panel() -> None:
    rng = np.random.default_rng(3)
    angles = rng.uniform(-np.pi / 2, np.pi / 2, (300, 3))
    fig = figures.error_along_orbits(
        {"rotation probe, equi": (angles, rng.uniform(0, 90, 300))},
        references={"constant predictor (probes)": 71.4, "do-nothing predictor (retrieval)": 88.0},
    )
    for ax in fig.axes:
        assert reference_lines(ax) == [
            (71.4, "constant predictor (probes): 71°"),
            (88.0, "do-nothing predictor (retrieval): 88°"),
        ]
    assert all(
        reference_lines(ax) == [] for ax in figures.error_along_orbits({"x": (angles, angles[:, 0])}).axes
    )


def test_objects_and_classes_are_named_as_people_read_them(tmp_path: Path) -> None:
    from sie.eval.figure_data import class_display_names, object_display_name

    # A dataset rendered by `sie render` names its classes in dataset.json ...
    (tmp_path / "dataset.json").write_text(json.dumps({"classes": [{"synset": "00000001", "name": "cone"}]}))
    names = class_display_names(tmp_path, ["00000001", "02691156", "99999999"])
    # ... the real 3DIEBench does not: its ShapeNet synsets get their names; unknown ids stay ids.
    assert names == {"00000001": "cone", "02691156": "airplane", "99999999": "99999999"}
    assert object_display_name("/02691156/000000042/", names) == "airplane #42"
    assert object_display_name("02691156/dc8d4ab12e5c8e1a", names) == "airplane dc8d4ab1"
    assert object_display_name("loose", {}) == "loose"
    (tmp_path / "dataset.json").write_text("{not json")
    assert class_display_names(tmp_path, ["02691156"]) == {"02691156": "airplane"}
