"""``sie render``: flags as spelled in DESIGN.md, exit codes 0 / 2, resolution of presets and flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("warp")

from sie.cli import main
from sie.errors import ConfigError
from sie.render.settings import RENDER_PRESETS, resolve_render_config


def test_render_command_writes_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    argv = [
        "render",
        str(out),
        "--preset",
        "tiny",
        "--classes",
        "2",
        "--objects-per-class",
        "2",
        "--views",
        "2",
    ]
    argv += [
        "--size",
        "16",
        "--variant",
        "T",
        "--workers",
        "1",
        "--seed",
        "3",
        "--backend",
        "warp",
        "--quiet",
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)
    manifest = json.loads((out / "dataset.json").read_text())
    assert (
        manifest["status"] == "complete" and manifest["latent_size"] == 10 and manifest["config"]["seed"] == 3
    )
    assert main([*argv, "--shard", "0/1"]) == 0  # resuming a complete dataset is a no-op


@pytest.mark.parametrize(
    "extra",
    [
        ["--shard", "2/2"],
        ["--shard", "x"],
        ["--source", "objaverse:/nowhere"],
        ["--backend", "mitsuba"],
        ["--set", "render.jpeg_quality=0"],
        ["--orbit", "trans_x"],
        ["--set", "render.no_such_key=1"],
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, extra: list[str]) -> None:
    assert main(["render", str(tmp_path / "ds"), "--preset", "tiny", "--quiet", *extra]) == 2


def test_presets_and_layering() -> None:
    assert RENDER_PRESETS["full"].class_sizes == "3diebench" and RENDER_PRESETS["full"].size == 256
    cfg = resolve_render_config(
        "small", overrides=["render.views=7"], flags={"render.size": 48, "render.seed": None}
    )
    assert (cfg.render.classes, cfg.render.views, cfg.render.size, cfg.render.seed) == (10, 7, 48, 0)
    with pytest.raises(ConfigError, match="unknown render preset"):
        resolve_render_config("huge")
    with pytest.raises(ConfigError, match="rotation_range"):
        resolve_render_config("tiny", overrides=["render.rotation_range=[1.0]"])


def test_render_checks_only_render_settings_and_names_the_flag_at_fault() -> None:
    # One view per object is a valid dataset to render, whatever a training config would consume.
    assert resolve_render_config("tiny", flags={"render.views": 1}).render.views == 1
    with pytest.raises(ConfigError, match=r"^--set render\.rotation_range=\[1\.0\]: render\.rotation_range"):
        resolve_render_config("tiny", overrides=["render.rotation_range=[1.0]"])


def test_objects_per_class_message_names_that_flag_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            ["render", str(tmp_path / "ds"), "--preset", "tiny", "--classes", "2", "--objects-per-class", "0"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--objects-per-class: render.objects_per_class=0 must be positive" in err
    assert "--classes" not in err and "--class-sizes" not in err
