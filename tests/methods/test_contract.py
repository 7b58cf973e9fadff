"""The method contract: representation parts, split isolation, predictor API, refusals.

Methods here get a cheap stand-in backbone (the real ones: tests/nn and the registry smoke test)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tests.methods.plain import random_batch, tiny_config

from sie.config import Config, DataConfig, ModelConfig, TrainConfig
from sie.errors import ConfigError, UsageError
from sie.methods import build_method

pytestmark = pytest.mark.usefixtures("stand_in_backbone")


def test_paper_sie_dimensions() -> None:
    method = build_method(Config(), 4)
    assert method.representation_parts == {
        "full": slice(0, 512),
        "inv": slice(0, 256),
        "equi": slice(256, 512),
    }
    assert method.projector_inv[0].in_features == 256 and method.projector_equi[0].in_features == 256
    assert method.projector_inv.out_dim == method.projector_equi.out_dim == 1024
    assert method.predictor.generator.weight.shape == (1024 * 1024, 4)
    assert method.has_predictor


def test_sie_parts_never_see_each_other() -> None:
    # Gradients of each embedding reach only its own part of the representation.
    method = build_method(tiny_config("sie", mlp="64-64", equi=128), 4)
    h = torch.randn(5, 512, requires_grad=True)
    method.embed_equivariant(h).square().sum().backward()
    assert torch.all(h.grad[:, :384] == 0) and torch.all(h.grad[:, 384:].abs().sum(0) > 0)
    h.grad = None
    method.embed_invariant(h).square().sum().backward()
    assert torch.all(h.grad[:, 384:] == 0) and torch.all(h.grad[:, :384].abs().sum(0) > 0)
    # The invariant embedding of real images sends no gradient to the equivariant projector.
    method.zero_grad()
    method.embed_invariant(method.backbone(random_batch(4, 4).x)).sum().backward()
    assert all(p.grad is None for p in method.projector_equi.parameters())
    assert method.representation_parts["equi"] == slice(384, 512)


@pytest.mark.parametrize("name", ["sie", "sie-onlyequi", "simclr-onlyequi", "equimod", "equimod-vicreg"])
def test_predictor_api_with_a_batch_of_one(name: str) -> None:
    method = build_method(tiny_config(name), 4).eval()
    assert method.has_predictor
    with torch.no_grad():
        h = method.backbone(torch.randn(1, 3, 16, 16))
        z = method.embed_equivariant(h)
        assert h.shape == (1, 512) and z.ndim == 2 and z.shape[0] == 1
        assert method.predict(z, torch.randn(1, 4)).shape == z.shape


@pytest.mark.parametrize("name", ["vicreg", "simclr", "augself", "supervised"])
def test_methods_without_predictor_say_so(name: str) -> None:
    method = build_method(tiny_config(name), 4)
    assert not method.has_predictor and set(method.representation_parts) == {"full"}
    with pytest.raises(UsageError, match="has no predictor"):
        method.predict(torch.zeros(1, 32), torch.zeros(1, 4))


def test_supervised_and_augself_with_a_batch_of_one() -> None:
    method = build_method(tiny_config("supervised"), 4)
    method.backbone.eval()  # BatchNorm cannot train on a single sample
    out = method(random_batch(1, 4))
    assert out.representations.shape == (1, 2, 512) and torch.isfinite(out.loss)
    augself = build_method(tiny_config("augself"), 4)
    assert augself.augself(torch.randn(1, 512), torch.randn(1, 512)).shape == (1, 4)


def test_supervised_refuses_labels_beyond_its_head() -> None:
    method = build_method(tiny_config("supervised", num_classes=3), 4)
    batch = random_batch(4, 4)
    batch.labels[:] = 4
    with pytest.raises(UsageError, match=r"model.num_classes=3"):
        method(batch)


def test_batches_must_fit_the_method() -> None:
    method = build_method(tiny_config("vicreg"), 4)
    with pytest.raises(ValueError, match="transform_dim=4"):
        method(random_batch(4, 6))


# ---- refusals at construction, naming fields and values ----------------------------------------


def _cfg(
    method: str, transform: str = "quat", batch_size: int = 64, views: int = 2, **model: object
) -> Config:
    return Config(
        model=ModelConfig(method=method, **model),  # type: ignore[arg-type]
        data=DataConfig(transform=transform, views_per_sample=views),  # type: ignore[arg-type]
        train=TrainConfig(batch_size=batch_size),
    )


@pytest.mark.parametrize(
    ("cfg", "transform_dim", "message"),
    [
        (_cfg("sie", equi=512), 4, r"model.equi=512 must be in \(0, 512\)"),
        (_cfg("sie", equi=0), 4, r"model.equi=0 must be in \(0, 512\)"),
        (_cfg("sie", mlp="32-32", equi=8), 4, r"model.mlp='32-32' with model.equi=8: .*zero width"),
        (
            _cfg("sie-rotcolor"),
            4,
            r"needs data.transform='rotcolor' with transform_dim=6 \(got data.transform='quat'",
        ),
        (
            _cfg("sie-rotcolor", transform="rotcolor"),
            9,
            r"transform_dim=6 \(got data.transform='rotcolor', transform_dim=9\)",
        ),
        (_cfg("sie"), 6, r"transform_dim=6 does not match data.transform='quat', which gives 4 or 7"),
        (
            _cfg("vicreg-partinv", mlp="64-64", equi=64),
            4,
            r"model.equi=64 must be in \(0, 64\).*model.mlp='64-64'",
        ),
        (_cfg("sei"), 4, r"model.method='sei' is not a registered method \(did you mean 'sie'\?\)"),
        (_cfg("sie", views=3), 4, r"data.views_per_sample=3: model.method=.sie. trains on 2 views"),
        (_cfg("vicreg", batch_size=1), 4, r"train.batch_size=1 with model.cov_denominator='batch_size'"),
        (_cfg("sie", predictor_type="mlp", tf_num_layers=0), 4, r"model.tf_num_layers=0"),
        (_cfg("supervised", num_classes=1), 4, r"model.num_classes=1"),
        (_cfg("sie", mlp=""), 4, r"model.mlp"),
    ],
)
def test_inconsistent_configs_are_refused(cfg: Config, transform_dim: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_method(cfg, transform_dim)


def test_rotcolor_and_translation_variants_are_accepted() -> None:
    tiny = tiny_config("sie-rotcolor")
    assert build_method(tiny, 6).predictor.param_dim == 6
    augself = dataclasses.replace(tiny_config("augself"), data=DataConfig(transform="rotcolor"))
    assert build_method(augself, 6).augself.net[-1].out_features == 6
    translated = build_method(tiny_config("sie"), 7)  # quat + 3 translation deltas (-T datasets)
    assert translated.predictor.param_dim == 7
    gathered = build_method(tiny_config("vicreg", cov_denominator="gathered"), 4)
    assert gathered.cov_denominator is None
