"""Learning-rate schedules: pure functions of the global step."""

from __future__ import annotations

import math

import pytest

from sie.engine.schedule import lr_at, warmup_steps_for


def test_constant_is_the_reference_schedule() -> None:
    assert [lr_at(s, base_lr=1e-3, total_steps=10) for s in (0, 5, 9, 50)] == [1e-3] * 4


def test_linear_warmup_by_hand() -> None:
    lrs = [lr_at(s, base_lr=1.0, total_steps=100, warmup_steps=4) for s in range(6)]
    assert lrs == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_by_hand_and_against_plain_formula() -> None:
    kw = {"base_lr": 2.0, "total_steps": 10, "schedule": "cosine", "final_lr": 0.0}
    assert lr_at(0, **kw) == pytest.approx(2.0)  # type: ignore[arg-type]
    assert lr_at(5, **kw) == pytest.approx(1.0)  # type: ignore[arg-type]  # halfway: (1 + cos(pi/2)) / 2
    assert lr_at(10, **kw) == pytest.approx(0.0)  # type: ignore[arg-type]
    assert lr_at(99, **kw) == pytest.approx(0.0)  # type: ignore[arg-type]  # clipped after the end
    base, final, warm, total = 0.5, 0.01, 3, 20
    for step in range(total + 2):
        if step < warm:
            expected = base * (step + 1) / warm
        else:
            progress = min(1.0, (step - warm) / (total - warm))
            expected = final + 0.5 * (base - final) * (1 + math.cos(math.pi * progress))
        got = lr_at(
            step, base_lr=base, total_steps=total, schedule="cosine", warmup_steps=warm, final_lr=final
        )
        assert got == pytest.approx(expected, rel=1e-12)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, base_lr=1.0, total_steps=1)
    with pytest.raises(ValueError, match="schedule"):
        lr_at(0, base_lr=1.0, total_steps=1, schedule="linear")
    assert warmup_steps_for(0.5, 41) == 20 and warmup_steps_for(0.0, 41) == 0
