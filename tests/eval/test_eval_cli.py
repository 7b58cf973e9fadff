"""End to end: `sie eval` and `sie report` on the tiny dataset with 2-step-trained SIE and VICReg runs."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from tests.helpers.tiny_dataset import write_tiny_dataset

from sie.checkpoint import checkpoint_hash
from sie.cli import main
from sie.config import RenderConfig, resolve_config
from sie.data import open_split
from sie.data.pack import pack_dataset
from sie.engine import train
from sie.render.generator import render_dataset

QUICK = ["--preset", "quick", "--set", "eval.probe_epochs=2", "--set", "eval.probe_hidden=32-32"]


@pytest.fixture(scope="module")
def runs(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for method in ("sie", "vicreg"):
        cfg = resolve_config(
            "cpu-small",
            overrides=[
                f"data.root={tiny_dataset}",
                "data.resolution=32",
                "data.num_workers=0",
                f"model.method={method}",
                "model.mlp=64-64-64",
                "train.batch_size=4",
                "train.precision=fp32",
            ],
        )
        out[method] = train(cfg, tmp_path_factory.mktemp(f"run-{method}"), max_steps=2)
    return out


@pytest.fixture(scope="module")
def evaluated(
    runs: dict[str, Path], tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    # Rendered orbit sweeps (one object, rotation about x on an even grid) for the latent-steering figure.
    orbit_cfg = RenderConfig(
        classes=1, objects_per_class=2, views=6, size=32, samples_per_pixel=1, orbit_factor="rot_x"
    )
    orbit = render_dataset(orbit_cfg, tmp_path_factory.mktemp("orbit"), workers=1, progress=False).root
    sie_args = ["--seeds", "0", "1", "--orbit", str(orbit)]
    assert main(["eval", str(runs["sie"]), "--data", str(tiny_dataset), *QUICK, *sie_args]) == 0
    assert main(["eval", str(runs["vicreg"]), "--data", str(tiny_dataset), *QUICK]) == 0
    return runs


def results(run: Path) -> dict:
    return json.loads((run / "eval" / "results.json").read_text())


def test_results_json_records(evaluated: dict[str, Path], tiny_dataset: Path) -> None:
    res = results(evaluated["sie"])
    val = open_split(tiny_dataset, "val")
    assert res["checkpoint_hash"] == checkpoint_hash(evaluated["sie"] / "checkpoint.pt")
    assert res["dataset"]["splits"]["val"]["manifest_hash"] == val.manifest_hash
    assert res["parts"] == {"inv": [0, 256], "equi": [256, 512], "full": [0, 512]}
    assert res["config"]["probe_epochs"] == 2 and res["preset"] == "quick"
    keys = [(r["metric"], r["task"], r["part"], r["split"], r["seed"]) for r in res["records"]]
    assert len(keys) == len(set(keys))  # one record per (metric, part, split, seed)
    per_seed = Counter(k[4] for k in keys)
    assert per_seed[0] == per_seed[1] == 3 * (2 + 3)  # 3 parts x (top-1, top-5, 3 regression R²)
    assert {(k[0], k[3]) for k in keys if k[1] == "retrieval"} >= {("MRR", "val-val"), ("H@2", "train-train"),
                                                                   ("PRE", "val-all")}  # fmt: skip
    assert not [k for k in keys if k[0] in ("H@5", "H@10")]  # k >= 5 views per object: 1 for any method
    ranks = {k[2] for k in keys if k[1] == "rank"}
    assert ranks == {"inv", "equi", "full", "embedding"}  # RankMe per part and of the embeddings
    for r in res["records"]:
        assert r["checkpoint_hash"] == res["checkpoint_hash"] and r["manifest_hash"]
        assert (r["chance"] is None) == (r["task"] == "rank") and np.isfinite(r["value"])
    top1_full = next(s for s in res["summary"] if (s["metric"], s["part"]) == ("top1", "full"))
    assert top1_full["n"] == 2 and top1_full["chance"] == pytest.approx(1 / 3)
    arrays = np.load(evaluated["sie"] / "eval" / "figures.npz")
    assert {"steering/0/encoded", "steering/1/encoded", "retrieval/retrieved", "orbit/equi/errors",
            "orbit/reference/constant", "orbit/reference/do_nothing"} <= set(arrays)  # fmt: skip
    assert (
        0 < float(arrays["orbit/reference/constant"]) < 180
        and 0 < float(arrays["orbit/reference/do_nothing"]) < 180
    )
    assert str(arrays["steering/0/title"][0]).startswith("rendered orbit")
    np.testing.assert_allclose(arrays["steering/0/values"], np.linspace(-90, 90, 6), atol=1e-6)
    vicreg = results(evaluated["vicreg"])
    assert not any(r["task"] == "retrieval" for r in vicreg["records"])
    assert any("no predictor" in note for note in vicreg["notes"])


def test_report_table_and_figures(evaluated: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["report", str(evaluated["sie"]), str(evaluated["vicreg"]), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    table = [line.strip("|").split("|") for line in md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in table[0]]
    assert header[0] == "Method" and {"Top-1 inv (%)", "Top-1 full (%)", "Rot. R² equi", "Colour R² full",
                                      "Colour R² inv ↓", "MRR", "H@1", "PRE ↓"} <= set(header)  # fmt: skip
    assert "H@5" not in header  # 5 views per object
    assert md.splitlines()[2].startswith("sie (")  # the verdict opens the report
    first_cells = [row[0].strip() for row in table[1:4]]
    assert first_cells[0].startswith("sie (") and first_cells[1].startswith("vicreg (")
    assert first_cells[2] == "chance level"
    vicreg_row = dict(zip(header, (c.strip() for c in table[2]), strict=True))
    assert vicreg_row["MRR"] == "n/a"
    pngs = sorted((out / "figures").glob("*.png"))
    assert {p.stem for p in pngs} >= {"training_curves", "dataset_preview"} and len(pngs) >= 5
    for png in pngs:
        with Image.open(png) as img:
            assert img.size[0] > 100 and np.asarray(img.convert("L")).std() > 5
    assert (out / "report.html").read_text().count("data:image/png;base64,") == len(pngs)


def test_features_are_reused_and_never_mixed_across_datasets(
    evaluated: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = evaluated["vicreg"]
    assert main(["eval", str(run), "--data", str(Path(results(run)["dataset"]["root"])), *QUICK]) == 0
    assert all(f["extraction_s"] == 0.0 for f in results(run)["features"].values())  # read from the cache
    # Another dataset (-T variant, with an extra OOD split): features are extracted anew, side by side.
    other = write_tiny_dataset(tmp_path / "other", seed=7, latent_size=10)
    np.save(other / "ood_images.npy", np.load(other / "val_images.npy"))
    np.save(other / "ood_labels.npy", np.load(other / "val_labels.npy"))
    tasks = "eval.tasks=[classification,rotation,translation]"
    assert main(["eval", str(run), "--data", str(other), *QUICK, "--set", tasks, "--ood-split", "ood"]) == 0
    res = results(run)
    assert res["dataset"]["splits"]["val"]["manifest_hash"] == open_split(other, "val").manifest_hash
    assert all(f["extraction_s"] > 0 for f in res["features"].values())
    cached = sorted(p.name for p in (run / "eval" / "features").glob("*.safetensors"))
    assert len(cached) == 5  # train and val of each dataset, and the OOD split
    splits = {(r["task"], r["split"]) for r in res["records"]}
    assert {("rotation", "ood"), ("translation", "val"), ("classification", "val")} <= splits
    # SIE's predictor was built for quaternions (P = 4); -T latents would give P = 7: refused up front.
    assert main(["eval", str(evaluated["sie"]), "--data", str(other), *QUICK]) == 2
    assert "transformation parameters" in capsys.readouterr().err


def test_eval_reads_a_packed_store(evaluated: dict[str, Path], tiny_dataset: Path, tmp_path: Path) -> None:
    packed = pack_dataset(tiny_dataset, tmp_path / "packed", 32, workers=1, progress=False)
    run = evaluated["vicreg"]
    assert (
        main(["eval", str(run), "--data", str(packed), *QUICK, "--set", "eval.tasks=[classification]"]) == 0
    )
    res = results(run)
    assert res["dataset"]["root"] == str(packed.resolve())
    assert {r["metric"] for r in res["records"]} == {"top1", "top5"}


def test_a_store_repacked_at_another_resolution_is_not_reused(
    evaluated: dict[str, Path], tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: the same store path packed again at 48 px reused the 40 px store's features, even
    with --refuse-stale-features. Now refused with that flag (nothing written), recomputed without."""
    run, store = evaluated["vicreg"], tmp_path / "packed"
    args = ["eval", str(run), "--data", str(store), *QUICK, "--set", "eval.tasks=[classification]"]
    pack_dataset(tiny_dataset, store, 40, workers=1, progress=False)
    assert main(args) == 0
    first = {s: f["path"] for s, f in results(run)["features"].items()}
    shutil.rmtree(store)
    pack_dataset(tiny_dataset, store, 48, workers=1, progress=False)
    before = sorted((run / "eval" / "features").glob("*.safetensors"))
    capsys.readouterr()
    assert main([*args, "--refuse-stale-features"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stale cached features of split 'train'" in err
    assert "manifest_hash: file has" in err and f"the dataset at {store.resolve()} changed" in err
    assert sorted((run / "eval" / "features").glob("*.safetensors")) == before
    assert main(args) == 0
    res = results(run)
    assert all(f["extraction_s"] > 0 for f in res["features"].values())
    assert res["dataset"]["splits"]["val"]["manifest_hash"] == open_split(store, "val").manifest_hash
    assert not any(Path(p).exists() for p in first.values())  # the 40 px store's features are deleted


def test_report_on_a_run_trained_further_after_its_evaluation(
    evaluated: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: train, evaluate, train further, report: the report showed the first evaluation silently."""
    run = tmp_path / "vicreg"
    shutil.copytree(evaluated["vicreg"], run)
    evaluated_hash = results(run)["checkpoint_hash"]
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "3"]) == 0
    now = checkpoint_hash(run / "checkpoint.pt")
    assert now != evaluated_hash
    capsys.readouterr()
    assert main(["report", str(run), str(evaluated["sie"]), "--out", str(tmp_path / "report")]) == 0
    err = capsys.readouterr().err
    assert f"evaluated checkpoint {evaluated_hash}, but {run / 'checkpoint.pt'} is now {now}" in err
    md = (tmp_path / "report" / "report.md").read_text()
    assert "**Warning:** stale evaluation of vicreg" in md and md.count("**Warning:**") == 1  # sie is current


def test_bad_inputs_exit_2_with_one_line(
    runs: dict[str, Path], tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A checkpoint whose architecture does not match its config: the keys are listed.
    wrong = tmp_path / "wrong-arch"
    shutil.copytree(runs["sie"], wrong, ignore=shutil.ignore_patterns("eval"))
    cfg = yaml.safe_load((wrong / "config.yaml").read_text())
    cfg["model"]["equi"] = 128
    (wrong / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["eval", str(wrong), "--data", str(tiny_dataset), *QUICK]) == 2
    assert "shape mismatches" in capsys.readouterr().err
    # An empty split.
    empty = tmp_path / "empty-val"
    shutil.copytree(tiny_dataset, empty)
    np.save(empty / "val_images.npy", np.array([], dtype="<U43"))
    np.save(empty / "val_labels.npy", np.array([], dtype=np.int64))
    assert main(["eval", str(runs["vicreg"]), "--data", str(empty), *QUICK]) == 2
    assert "val" in capsys.readouterr().err
    # Model keys cannot change at evaluation time; a run without results cannot be reported.
    assert main(["eval", str(runs["vicreg"]), "--data", str(tiny_dataset), "--set", "model.equi=1"]) == 2
    assert main(["report", str(wrong), "--out", str(tmp_path / "r")]) == 2
    assert "no eval/results.json" in capsys.readouterr().err


def test_seq_jepa_is_evaluated_on_its_aggregate_and_its_predictor(tiny_dataset: Path, tmp_path: Path) -> None:
    # A sequence method through the unchanged protocol: single-view probes on the backbone, the
    # aggregate of eval_seq_len views for classification, retrieval through its one-view predictor.
    cfg = resolve_config(
        "cpu-small",
        overrides=[
            f"data.root={tiny_dataset}",
            "data.resolution=32",
            "data.num_workers=0",
            "model.method=seq-jepa",
            "model.seq_jepa.seq_len=2",
            "model.seq_jepa.eval_seq_len=4",
            "model.seq_jepa.pred_hidden=32",
            "train.batch_size=4",
            "train.precision=fp32",
        ],
    )
    run = train(cfg, tmp_path / "run", max_steps=2)
    assert main(["eval", str(run), "--data", str(tiny_dataset), *QUICK]) == 0
    res = results(run)
    keys = {(r["metric"], r["task"], r["part"], r["split"]) for r in res["records"]}
    assert {("top1", "classification", "aggregate", "val"), ("top1", "classification", "full", "val"),
            ("r2", "rotation", "full", "val"), ("r2", "absolute_rotation", "full", "val"),
            ("MRR", "retrieval", "embedding", "val-val")} <= keys  # fmt: skip
    aggregate = next(r for r in res["records"] if r["part"] == "aggregate" and r["metric"] == "top1")
    assert aggregate["probe"]["sequence_views"] == 4 and res["has_predictor"]
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    assert "Top-1 aggregate (%)" in (tmp_path / "report" / "report.md").read_text()
