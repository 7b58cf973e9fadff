"""Learning-rate schedules: pure functions of the global step."""

from __future__ import annotations

import pytest

from sie.engine.schedule import lr_at, warmup_steps_for


def test_constant_is_the_reference_schedule() -> None:
    assert [lr_at(s, base_lr=1e-3, total_steps=10) for s in (0, 5, 9, 50)] == [1e-3] * 4


def test_linear_warmup_by_hand() -> None:
    lrs = [lr_at(s, base_lr=1.0, total_steps=100, warmup_steps=4) for s in range(6)]
    assert lrs == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_by_hand() -> None:
    kw = {"base_lr": 2.0, "total_steps": 10, "schedule": "cosine", "final_lr": 0.0}
    assert lr_at(0, **kw) == pytest.approx(2.0)  # type: ignore[arg-type]
    assert lr_at(5, **kw) == pytest.approx(1.0)  # type: ignore[arg-type]  # halfway: (1 + cos(pi/2)) / 2
    assert lr_at(10, **kw) == pytest.approx(0.0)  # type: ignore[arg-type]
    assert lr_at(99, **kw) == pytest.approx(0.0)  # type: ignore[arg-type]  # clipped after the end
    # Warm-up then cosine, at known points: 3 warm-up steps, 20 steps of decay from 0.5 to 0.01.
    kw2 = {"base_lr": 0.5, "total_steps": 23, "schedule": "cosine", "warmup_steps": 3, "final_lr": 0.01}
    known = {
        0: 0.5 / 3,  # first warm-up step
        2: 0.5,  # last warm-up step reaches the peak
        3: 0.5,  # decay starts at the peak (t = 0)
        8: 0.01 + 0.49 * (1 + 0.5**0.5) / 2,  # t = 1/4: cos(pi/4) = sqrt(2)/2 -> 0.42824
        13: 0.255,  # t = 1/2: halfway between 0.5 and 0.01
        23: 0.01,  # t = 1: the final lr
        40: 0.01,  # clipped after the end
    }
    for step, expected in known.items():
        assert lr_at(step, **kw2) == pytest.approx(expected, rel=1e-12), step  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, base_lr=1.0, total_steps=1)
    with pytest.raises(ValueError, match="schedule"):
        lr_at(0, base_lr=1.0, total_steps=1, schedule="linear")
    assert warmup_steps_for(0.5, 41) == 20 and warmup_steps_for(0.0, 41) == 0
