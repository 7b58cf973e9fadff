"""sie.eval.presets: eval presets and the layering of eval settings over a run's config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sie.config import CPU_SMALL, PAPER, ConfigError
from sie.eval.presets import EVAL_PRESETS, eval_preset, resolve_eval_config


def test_presets_differ_only_in_the_probe_schedule() -> None:
    paper, quick = eval_preset("paper"), eval_preset("quick")
    assert paper == PAPER.eval and paper.probe_epochs == 300 and paper.probe_hidden == "1024-1024"
    changed = {f.name for f in dataclasses.fields(paper) if getattr(paper, f.name) != getattr(quick, f.name)}
    assert changed == {"probe_epochs"} and quick.probe_epochs < paper.probe_epochs
    assert set(EVAL_PRESETS) == {"paper", "quick"}
    with pytest.raises(ConfigError, match="unknown eval preset"):
        eval_preset("qiuck")


def test_layering_run_section_preset_file_set_flags(tmp_path: Path) -> None:
    assert resolve_eval_config(CPU_SMALL) == CPU_SMALL.eval  # no preset: the run's own eval section
    assert resolve_eval_config(CPU_SMALL, "paper").probe_epochs == 300
    yaml_file = tmp_path / "eval.yaml"
    yaml_file.write_text("eval:\n  probe_epochs: 7\n  probe_seeds: [0, 1, 2]\n")
    cfg = resolve_eval_config(PAPER, "quick", yaml_file, ["eval.probe_epochs=5"], {"eval.reference_bn": True})
    assert (cfg.probe_epochs, cfg.probe_seeds, cfg.reference_bn) == (5, (0, 1, 2), True)


def test_only_eval_keys_may_change(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only eval"):
        resolve_eval_config(PAPER, overrides=["model.equi=128"])
    other = tmp_path / "model.yaml"
    other.write_text("model:\n  equi: 128\n")
    with pytest.raises(ConfigError, match="sie eval changes only eval"):
        resolve_eval_config(PAPER, config_file=other)
    with pytest.raises(ConfigError, match="probe_epochs"):
        resolve_eval_config(PAPER, overrides=["eval.probe_epochs=-1"])


def test_ood_split_is_a_split_name_or_another_dataset(tiny_dataset: Path, tmp_path: Path) -> None:
    from tests.helpers.tiny_dataset import write_tiny_dataset

    from sie.eval.run import _open_ood

    other = write_tiny_dataset(tmp_path / "ood", classes=2, objects_per_class=4, views=3, seed=3)
    label, source = _open_ood(tiny_dataset, str(other))
    assert label == "ood" and source.root == other and source.split == "val"
    np.save(other / "extra_images.npy", np.load(other / "train_images.npy"))
    np.save(other / "extra_labels.npy", np.load(other / "train_labels.npy"))
    label, source = _open_ood(other, "extra")
    assert label == "extra" and source.num_objects == 6
    with pytest.raises(ConfigError, match="other than train and val"):
        _open_ood(other, "val")
