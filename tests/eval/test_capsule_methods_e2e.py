"""End to end for the capsule methods: a tiny rendered -T dataset -> 2 training steps -> `sie eval` -> `sie report`.

EquiCaps and CapsIE go through the unchanged protocol: every probe reads the average-pooled backbone map
(the EquiCaps evaluation scripts' choice), and -T datasets add translation R² in both frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sie.cli import main
from sie.config import RenderConfig, resolve_config
from sie.engine import train
from sie.errors import ConfigError
from sie.render.generator import render_dataset

QUICK = ["--preset", "quick", "--set", "eval.probe_epochs=2", "--set", "eval.probe_hidden=32-32"]
TASKS = ["--set", "eval.tasks=[classification,rotation,translation,translation_base,retrieval]"]


@pytest.fixture(scope="module")
def rendered_t(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = RenderConfig(classes=2, objects_per_class=4, views=4, size=32, samples_per_pixel=1, variant="T")
    return render_dataset(cfg, tmp_path_factory.mktemp("render-t"), workers=1, progress=False).root


def _train(data: Path, out: Path, *overrides: str) -> Path:
    cfg = resolve_config(
        "cpu-small",
        overrides=[
            f"data.root={data}",
            "data.resolution=32",
            "data.num_workers=0",
            "train.batch_size=4",
            "train.precision=fp32",
            *overrides,
        ],
    )
    return train(cfg, out, max_steps=2)


def test_equicaps_and_capsie_train_evaluate_and_report(rendered_t: Path, tmp_path: Path) -> None:
    runs = {
        "equicaps": _train(
            rendered_t, tmp_path / "equicaps", "model.method=equicaps", "model.equicaps.pose=4x4",
            "model.equicaps.frame=base", "model.equicaps.capsules=8",
        ),
        "capsie": _train(rendered_t, tmp_path / "capsie", "model.method=capsie", "model.capsie.width=32",
                         "model.capsie.capsules=8"),
    }  # fmt: skip
    results = {}
    for name, run in runs.items():
        assert main(["eval", str(run), "--data", str(rendered_t), *QUICK, *TASKS]) == 0
        res = results[name] = json.loads((run / "eval" / "results.json").read_text())
        keys = {(r["metric"], r["task"], r["part"], r["split"]) for r in res["records"]}
        assert {("top1", "classification", "full", "val"), ("r2", "rotation", "full", "val"),
                ("r2", "translation", "full", "val"), ("r2", "translation_base", "full", "val")} <= keys  # fmt: skip
    # EquiCaps: the pooled backbone only, as its evaluation scripts; no predictor, no retrieval.
    equicaps = results["equicaps"]
    assert equicaps["parts"] == {"full": [0, 512]} and not equicaps["has_predictor"]
    assert not [r for r in equicaps["records"] if r["task"] == "retrieval"]
    # CapsIE: also its capsules, as its released scripts probe them: 8 activations ("inv") and 8 x 4 pose
    # values ("equi"), with retrieval through its hypernetwork on the poses.
    capsie = results["capsie"]
    assert (
        capsie["parts"] == {"full": [0, 512], "inv": [512, 520], "equi": [520, 552]}
        and capsie["has_predictor"]
    )
    capsie_keys = {(r["metric"], r["task"], r["part"], r["split"]) for r in capsie["records"]}
    assert {("top1", "classification", "inv", "val"), ("r2", "rotation", "equi", "val"),
            ("MRR", "retrieval", "embedding", "val-val")} <= capsie_keys  # fmt: skip
    cache = sorted(p.name for p in (runs["capsie"] / "eval" / "features").glob("*.safetensors"))
    assert cache and all(name.endswith("-capsules.safetensors") for name in cache)
    # The reference's train-mode BatchNorm re-runs the backbone alone: refused for capsule outputs.
    assert (
        main(["eval", str(runs["capsie"]), "--data", str(rendered_t), *QUICK, *TASKS, "--reference-bn"]) == 2
    )
    assert main(["report", *map(str, runs.values()), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Transl. R² full" in report and "Transl. R² base full" in report


def test_equicaps_4x4_on_a_dataset_without_translations_is_one_line(tmp_path: Path) -> None:
    from tests.helpers.tiny_dataset import write_tiny_dataset

    base = write_tiny_dataset(tmp_path / "base", seed=1)
    with pytest.raises(
        ConfigError, match=rf"model.equicaps.pose='4x4' needs translations, but dataset {base} has none"
    ):
        _train(base, tmp_path / "run", "model.method=equicaps", "model.equicaps.pose=4x4")
