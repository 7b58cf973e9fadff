"""Registry-wide smoke test: every method, tiny backbone, 2 Adam steps on CPU; plus `sie methods`."""

from __future__ import annotations

import pytest
import torch
from tests.methods.plain import random_batch, tiny_config

from sie.cli import main
from sie.methods import METHODS, MethodOutput, StepProgress, build_method, list_methods

# Loss terms are declared by each method when it registers; these spot checks pin a few of them.
SPOT_CHECK_TERMS = {
    "sie": {"loss/inv", "loss/equi", "loss/std", "loss/cov", "loss/pred_std"},
    "sie-novar": {"loss/inv", "loss/equi", "loss/std", "loss/cov"},
    "vicreg": {"loss/inv", "loss/std", "loss/cov"},
    "equimod": {"loss/nce", "loss/nce_equi"},
    "supervised": {"loss/ce"},
}


def test_registry_names_and_descriptions() -> None:
    assert set(SPOT_CHECK_TERMS) <= set(METHODS)
    for name, terms in SPOT_CHECK_TERMS.items():
        assert set(METHODS[name].terms) == terms
    listed = list_methods()
    assert [name for name, _ in listed] == list(METHODS)
    for name, description in listed:
        assert name == name.lower() and description and "\n" not in description


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_two_steps(name: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(name)
    required = METHODS[name].requires_transform
    param_dim = required[1] if required else 4
    method = build_method(cfg, param_dim)
    assert method.name == name and method.cfg is cfg
    before = {k: v.detach().clone() for k, v in method.named_parameters()}
    groups = method.parameter_groups()
    optimizer = torch.optim.Adam([{"params": g.params} for g in groups], lr=1e-3)
    batch = random_batch(4, param_dim, views=method.views_per_sample, latents=True)
    for step in range(2):
        out = method(batch)
        assert isinstance(out, MethodOutput)
        assert out.loss.ndim == 0 and out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        method.on_step_end(StepProgress(step=step, total_steps=2, epoch=0, epochs=1))
    # Every trainable parameter is in exactly one group; frozen ones (EMA targets) in none.
    grouped = [id(p) for g in groups for p in g.params]
    assert sorted(grouped) == sorted(id(p) for p in method.parameters() if p.requires_grad)
    assert set(out.terms) == set(METHODS[name].terms)  # what the method declared when it registered
    for value in out.terms.values():
        assert value.ndim == 0 and not value.requires_grad and torch.isfinite(value)
    assert out.representations.shape == (4, method.views_per_sample, 512)
    assert not out.representations.requires_grad
    # Trained parameters move by the optimiser, EMA targets by on_step_end.
    unchanged = [k for k, v in method.named_parameters() if torch.equal(v, before[k])]
    assert unchanged == [], f"parameters not updated: {unchanged[:5]}"


def test_sie_methods_command_lists_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name, description in list_methods():
        assert any(line.startswith(name + " ") and description in line for line in out.splitlines())
    assert "model.equi_factor=0.45" in out  # key hyperparameters with their resolved values
    assert main(["methods", "--set", "model.equi_factor=4.5"]) == 0
    assert "model.equi_factor=4.5" in capsys.readouterr().out


def test_backbone_state_dict_loads_into_the_backbone_class() -> None:
    from sie.nn.backbones import build_backbone

    method = build_method(tiny_config("sie", arch="torchvision_resnet18"), 4)
    build_backbone("torchvision_resnet18", small_stem=True).load_state_dict(
        method.backbone_state_dict(), strict=True
    )


def test_losses_are_fp32_under_bf16_autocast() -> None:
    method = build_method(tiny_config("sie"), 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(random_batch(4, 4))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert all(v.dtype == torch.float32 for v in out.terms.values())
