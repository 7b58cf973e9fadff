"""The method plug-in contract: the docs/methods.md tutorial method, config sections, views, hooks."""

from __future__ import annotations

import dataclasses
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tests.methods.plain import random_batch, tiny_config

from sie import config as config_module
from sie.config import (
    Config,
    DataConfig,
    ModelConfig,
    config_from_dict,
    config_keys,
    config_to_dict,
    load_config_file,
    resolve_config,
    save_config,
)
from sie.errors import ConfigError
from sie.methods import (
    METHODS,
    Method,
    MethodOutput,
    StepProgress,
    build_method,
    register_method,
    views_per_sample,
)
from sie.methods.base import ParamGroup

DOCS = Path(__file__).resolve().parents[2] / "docs" / "methods.md"


def _unregister(name: str, section: str | None) -> None:
    METHODS.pop(name, None)
    if section is not None:
        config_module._METHOD_SECTIONS.pop(section, None)
        config_module._SECTION_OWNERS.pop(section, None)


@pytest.fixture
def tutorial_method() -> Iterator[type]:
    """Run the tutorial's code block as a module (as a plug-in file would be imported)."""
    text = DOCS.read_text()
    section = text[text.index("## Adding a method: one file") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "the tutorial has no python block"
    module = types.ModuleType("sie_tutorial_simsiam")
    sys.modules[module.__name__] = module  # dataclass annotations resolve through sys.modules
    try:
        exec(compile(code.group(1), str(DOCS), "exec"), module.__dict__)
        yield module.SimSiam
    finally:
        _unregister("simsiam", "simsiam")
        del sys.modules[module.__name__]


def test_the_tutorial_method_plugs_in_everywhere(tutorial_method: type, tmp_path: Path) -> None:
    assert METHODS["simsiam"].build is tutorial_method and METHODS["simsiam"].terms == ("loss/simsiam",)
    keys = {k.name: k for k in config_keys()}
    assert keys["model.simsiam.pred_hidden"].default == 512 and keys["model.simsiam.dim"].unit == "dims"

    cfg = resolve_config("paper", overrides=["model.method=simsiam", "model.simsiam.pred_hidden=64"])
    assert cfg.model.section("simsiam").pred_hidden == 64 and cfg.model.section("simsiam").dim == 2048
    # The resolved config lists the active method's whole section, and round-trips through a file.
    assert config_to_dict(cfg)["model"]["simsiam"] == {"dim": 2048, "pred_hidden": 64}
    assert load_config_file(save_config(cfg, tmp_path)) == cfg

    with pytest.raises(
        ConfigError,
        match=r"unknown key 'model\.simsiam\.pred_hiden' \(did you mean 'model\.simsiam\.pred_hidden'\?\)",
    ):
        resolve_config("paper", overrides=["model.method=simsiam", "model.simsiam.pred_hiden=64"])
    with pytest.raises(ConfigError, match=r"model\.simsiam\.dim must be int, got 'wide'"):
        resolve_config("paper", overrides=["model.method=simsiam", "model.simsiam.dim=wide"])
    with pytest.raises(
        ConfigError,
        match=r"model\.simsiam\.dim=8 is a setting of method 'simsiam', not of model\.method='sie'",
    ):
        resolve_config("paper", overrides=["model.simsiam.dim=8"])
    # The method validates its own values when built.
    bad = resolve_config("paper", overrides=["model.method=simsiam", "model.simsiam.pred_hidden=0"])
    with pytest.raises(ConfigError, match=r"model\.simsiam\.pred_hidden=0 must be >= 1"):
        build_method(bad, 4)


def test_the_tutorial_method_trains(tutorial_method: type) -> None:
    torch.manual_seed(0)
    base = tiny_config("simsiam")
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, sections=()))
    cfg = config_from_dict(
        {
            **config_to_dict(cfg),
            "model": {**config_to_dict(cfg)["model"], "simsiam": {"dim": 32, "pred_hidden": 8}},
        }
    )
    method = build_method(cfg, 4)
    assert isinstance(method, tutorial_method) and method.projector[0].out_features == 32
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
    batch = random_batch(4, 4)
    losses = []
    for _ in range(2):
        out = method(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    assert set(out.terms) == {"loss/simsiam"} and all(0.0 <= v <= 2.0 for v in losses)


def test_an_untouched_section_of_another_method_is_dropped(tutorial_method: type, tmp_path: Path) -> None:
    # A config saved by a simsiam run, reused with another method: the default section goes away.
    saved = save_config(resolve_config("paper", overrides=["model.method=simsiam"]), tmp_path)
    cfg = resolve_config("paper", config_file=saved, overrides=["model.method=vicreg"])
    assert cfg.model.sections == () and "simsiam" not in config_to_dict(cfg)["model"]


def test_a_section_needs_a_frozen_dataclass_and_a_free_name() -> None:
    @dataclasses.dataclass
    class Mutable:
        x: int = 1

    with pytest.raises(TypeError, match="must be frozen"):
        register_method("mutable-toy", description="toy", terms=("loss/x",), section=Mutable)(Method)
    with pytest.raises(ValueError, match=r"not a model\.\* key"):
        register_method("toy", description="toy", terms=("loss/x",), section=DataConfig, section_name="equi")(
            Method
        )
    with pytest.raises(ValueError, match="one-line description"):
        register_method("toy", description="", terms=("loss/x",))
    with pytest.raises(ValueError, match="terms must be"):
        register_method("toy", description="toy", terms=("inv",))
    assert "toy" not in METHODS and "mutable-toy" not in METHODS


class _ThreeViews(Method):
    """A toy sequence method: invariance between consecutive views' representations."""

    def __init__(self, cfg: Config, transform_dim: int) -> None:
        super().__init__(cfg, transform_dim)
        self.steps_seen: list[StepProgress] = []

    def forward(self, batch: object) -> MethodOutput:
        h = self.encode_views(batch)  # type: ignore[arg-type]
        loss = (h[:, 1:] - h[:, :-1]).square().mean()
        return self.output(loss, {"loss/consecutive": loss}, h)

    def on_step_end(self, progress: StepProgress) -> None:
        self.steps_seen.append(progress)


@pytest.fixture
def three_view_method() -> Iterator[None]:
    register_method("toy-three-views", description="toy", terms=("loss/consecutive",), views=lambda cfg: 3)(
        _ThreeViews
    )
    yield
    _unregister("toy-three-views", None)


@pytest.mark.usefixtures("three_view_method", "stand_in_backbone")
def test_a_method_declares_its_views_per_sample() -> None:
    cfg = Config(model=ModelConfig(method="toy-three-views"))
    assert cfg.data.views_per_sample == 0 and views_per_sample(cfg) == 3
    assert views_per_sample(dataclasses.replace(cfg, data=DataConfig(views_per_sample=3))) == 3
    with pytest.raises(
        ConfigError, match=r"data\.views_per_sample=2: model\.method='toy-three-views' trains on 3"
    ):
        views_per_sample(dataclasses.replace(cfg, data=DataConfig(views_per_sample=2)))
    method = build_method(cfg, 4)
    assert method.views_per_sample == 3
    out = method(random_batch(2, 4, views=3))
    assert out.representations.shape == (2, 3, 512)
    with pytest.raises(ValueError, match="trains on 3 views per sample; got a batch with K=2"):
        method(random_batch(2, 4))
    assert views_per_sample(Config()) == 2  # pair methods


def test_default_parameter_groups_and_the_optimiser_layout() -> None:
    from sie.config import OptimConfig
    from sie.engine.optim import build_optimizer, optimizer_groups, set_lr

    a, b, frozen = torch.nn.Linear(3, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    frozen.requires_grad_(False)
    params = lambda m: list(m.parameters())  # noqa: E731
    cfg = OptimConfig(lr=1.0, weight_decay=0.1)
    # Adjacent groups with the same settings merge: the reference's single group.
    merged = optimizer_groups([ParamGroup("a", params(a)), ParamGroup("probes", params(b))], cfg)
    assert len(merged) == 1 and len(merged[0]["params"]) == 4 and merged[0]["weight_decay"] == 0.1
    scaled = optimizer_groups(
        [ParamGroup("a", params(a), lr_scale=0.1, weight_decay=0.0), ParamGroup("b", params(b))], cfg
    )
    assert [(g["lr_scale"], g["weight_decay"], len(g["params"])) for g in scaled] == [
        (0.1, 0.0, 2),
        (1.0, 0.1, 2),
    ]
    split = optimizer_groups(
        [ParamGroup("a", params(a))], dataclasses.replace(cfg, exclude_bias_and_norm=True)
    )
    assert [(g["weight_decay"], [p.ndim for p in g["params"]]) for g in split] == [(0.1, [2]), (0.0, [1])]
    with pytest.raises(ValueError, match="in both parameter groups 'a' and 'again'"):
        optimizer_groups([ParamGroup("a", params(a)), ParamGroup("again", params(a)[:1])], cfg)
    with pytest.raises(ValueError, match="requires no gradient"):
        optimizer_groups([ParamGroup("frozen", params(frozen))], cfg)
    optimizer = build_optimizer([ParamGroup("a", params(a), lr_scale=0.1), ParamGroup("b", params(b))], cfg)
    set_lr(optimizer, 2e-3)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([2e-4, 2e-3])


def test_step_progress_fractions() -> None:
    p = StepProgress(step=5, total_steps=20, epoch=1, epochs=4)
    assert p.progress("step") == 0.25 and p.progress("epoch") == 0.25
    assert StepProgress(step=0, total_steps=0, epoch=0, epochs=0).progress() == 0.0
    with pytest.raises(ValueError, match="unit"):
        p.progress("batch")
