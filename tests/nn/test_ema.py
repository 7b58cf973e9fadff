"""EMA targets: the momentum schedule by hand, the recursion after k updates, state and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sie.nn.ema import EMATarget, ema_momentum


def test_momentum_schedule_by_hand() -> None:
    assert ema_momentum(0.996, 0.0) == pytest.approx(0.996)  # cos 0 = 1: the base value
    assert ema_momentum(0.996, 0.5) == pytest.approx(0.998)  # cos(pi / 2) = 0: half way to 1
    assert ema_momentum(0.996, 1.0) == pytest.approx(1.0)  # cos pi = -1: frozen at the end
    assert ema_momentum(0.99, 0.25) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    assert ema_momentum(0.9, 0.7, "constant") == 0.9
    for bad in ((1.5, 0.1), (0.9, -0.1), (0.9, 1.1)):
        with pytest.raises(ValueError):
            ema_momentum(*bad)
    with pytest.raises(ValueError, match="unknown EMA schedule 'linear'"):
        ema_momentum(0.9, 0.5, "linear")  # type: ignore[arg-type]


def test_target_after_k_updates_follows_the_recursion() -> None:
    torch.manual_seed(0)
    online = nn.Linear(3, 2)
    target = EMATarget(online)
    start = target.module.weight.detach().clone()
    assert torch.equal(start, online.weight) and not any(p.requires_grad for p in target.parameters())
    # Online weights set to known values before each update; the target by hand, one scalar at a time.
    momenta = [0.5, 0.9, 0.75]
    online_values = [torch.full_like(online.weight, v) for v in (1.0, -2.0, 4.0)]
    expected = start.clone()
    for tau, value in zip(momenta, online_values, strict=True):
        with torch.no_grad():
            online.weight.copy_(value)
        target.update(online, tau)
        for i in range(expected.shape[0]):
            for j in range(expected.shape[1]):
                expected[i, j] = tau * expected[i, j] + (1 - tau) * value[i, j]
    torch.testing.assert_close(target.module.weight, expected, rtol=0, atol=1e-6)
    assert float(target.momentum) == 0.75
    # Closed form for this sequence: tau3 tau2 tau1 w0 + tau3 tau2 (1-tau1) v1 + tau3 (1-tau2) v2 + (1-tau3) v3.
    closed = 0.75 * 0.9 * 0.5 * start + 0.75 * 0.9 * 0.5 * 1.0 + 0.75 * 0.1 * -2.0 + 0.25 * 4.0
    torch.testing.assert_close(target.module.weight, closed, rtol=0, atol=1e-6)


def test_target_gives_no_gradient_and_its_state_round_trips() -> None:
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = EMATarget(online)
    out = target(torch.randn(5, 3))
    assert not out.requires_grad
    target.update(online, 0.9)
    state = target.state_dict()
    assert "momentum" in state and "module.0.weight" in state and "module.1.running_mean" in state
    other = EMATarget(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), state.values(), strict=True))


def test_update_refuses_another_module() -> None:
    target = EMATarget(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="do not match"):
        target.update(nn.Sequential(nn.Linear(3, 2)), 0.9)
