"""sie.eval.probes and sie.eval.tasks on synthetic feature tables (no images, no backbone)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from sie.eval import metrics, probes, tasks

CPU = torch.device("cpu")


def synthetic_split(num_objects: int, views: int, seed: int, classes: int = 4) -> tuple[torch.Tensor, ...]:
    """Latents (N, V, 7) with the 3DIEBench law, labels (N,), and features (N, V, 12) that encode them.

    Features: the view's absolute quaternion (4), its two hues (2), a one-hot-ish class code (4), noise (2).
    """
    gen = torch.Generator().manual_seed(seed)
    lat = torch.empty(num_objects, views, 7, dtype=torch.float64)
    lat[..., 0:3] = (
        (torch.rand(num_objects, views, 3, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi / 2
    )
    lat[..., 3:7] = torch.rand(num_objects, views, 4, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (num_objects,), generator=gen)
    quat = tasks.absolute_rotation_target(lat.reshape(-1, 7)).reshape(num_objects, views, 4)
    code = torch.nn.functional.one_hot(labels, classes).float()[:, None, :].expand(-1, views, -1)
    noise = 0.05 * torch.randn(num_objects, views, 2, generator=gen)
    feats = torch.cat(
        (quat, lat[..., [3, 6]].float(), code + 0.3 * torch.randn(code.shape, generator=gen), noise), -1
    )
    return lat, labels, feats


def schedule(epochs: int, hidden: tuple[int, ...] = (64, 64), batch_size: int = 32) -> probes.ProbeSchedule:
    return probes.ProbeSchedule(
        epochs=epochs, batch_size=batch_size, lr=3e-3, weight_decay=0.0, hidden=hidden
    )


def test_targets_match_scipy_and_plain_differences() -> None:
    lat, _, _ = synthetic_split(20, 3, seed=0)
    pairs = lat[:, :2]
    q = tasks.rotation_pair_target(pairs).double().numpy()
    ref = (
        Rotation.from_euler("xyz", pairs[:, 0, :3].numpy()).inv()
        * Rotation.from_euler("xyz", pairs[:, 1, :3].numpy())
    ).as_quat()
    np.testing.assert_allclose(q, ref, atol=1e-6)  # sign included: not canonicalised
    np.testing.assert_allclose(
        tasks.colour_pair_target(pairs).numpy(),
        (pairs[:, 1, [3, 6]] - pairs[:, 0, [3, 6]]).numpy(),
        atol=1e-6,
    )
    absolute = tasks.absolute_rotation_target(lat[:, 0]).double().numpy()
    np.testing.assert_allclose(
        absolute, Rotation.from_euler("xyz", lat[:, 0, :3].numpy()).as_quat(), atol=1e-6
    )
    assert [t.name for t in tasks.regression_tasks_for(7, ("rotation", "translation", "colour"))] == [
        "rotation",
        "colour",
    ]
    assert "translation" in [t.name for t in tasks.regression_tasks_for(10, ("translation",))]
    lat_t = torch.cat((pairs, torch.randn(20, 2, 3, dtype=torch.float64)), dim=-1)  # -T latents (10 values)
    np.testing.assert_allclose(
        tasks.translation_pair_target(lat_t).numpy(),
        (lat_t[:, 1, 7:10] - lat_t[:, 0, 7:10]).numpy(),
        atol=1e-6,
    )


def test_evaluation_pairs_cover_every_view_with_a_distinct_partner() -> None:
    objects, a, b = probes.evaluation_pairs(7, 5, seed=3)
    assert objects.tolist() == [o for o in range(7) for _ in range(5)]
    assert a.tolist() == list(range(5)) * 7
    assert bool((a != b).all()) and int(b.max()) < 5
    again = probes.evaluation_pairs(7, 5, seed=3)
    assert torch.equal(again[2], b)
    assert not torch.equal(probes.evaluation_pairs(7, 5, seed=4)[2], b)


def test_linear_classifier_learns_and_is_a_function_of_its_seed() -> None:
    _, labels, feats = synthetic_split(256, 4, seed=1)
    train = probes.CachedViewFeatures(feats, slice(6, 10))  # the class-code part only
    head = probes.fit_classifier(train, labels, 4, schedule(30, ()), seed=0, device=CPU)
    objects = torch.arange(256).repeat_interleave(4)
    views = torch.arange(4).repeat(256)
    logits = probes.predict_views(head, train, objects, views)
    assert metrics.top_k_accuracy(logits, labels[objects], 1) > 0.9
    again = probes.fit_classifier(train, labels, 4, schedule(30, ()), seed=0, device=CPU)
    other = probes.fit_classifier(train, labels, 4, schedule(30, ()), seed=1, device=CPU)
    assert torch.equal(again.weight, head.weight)
    assert not torch.equal(other.weight, head.weight)


def test_pair_regressors_learn_rotation_and_colour_on_held_out_objects() -> None:
    lat, _, feats = synthetic_split(384, 6, seed=2)
    val_lat, _, val_feats = synthetic_split(64, 6, seed=3)
    train, val = probes.CachedViewFeatures(feats), probes.CachedViewFeatures(val_feats)
    objects, a, b = probes.evaluation_pairs(64, 6, seed=0)
    val_pairs = torch.stack((val_lat[objects, a], val_lat[objects, b]), dim=1)
    scores = {}
    for name, epochs in (("rotation", 40), ("colour", 10)):
        task = tasks.REGRESSION_TASKS[name]
        head = probes.fit_pair_regressor(
            train,
            lat,
            task.target,
            task.out_dim,
            schedule(epochs, batch_size=64),
            seed=0,
            device=CPU,
            task=name,
        )
        pred = probes.predict_pairs(head, val, objects, a, b)
        scores[name] = metrics.pooled_r2(pred, task.target(val_pairs))
    floor = metrics.simulate_rotation_r2_floor(20_000)
    assert scores["rotation"] > 0.8 > floor + 0.5, scores  # far above the constant-mean floor (~0.23)
    assert scores["colour"] > 0.9, scores


def test_view_regressor_learns_absolute_rotation() -> None:
    lat, _, feats = synthetic_split(256, 4, seed=4)
    task = tasks.REGRESSION_TASKS["absolute_rotation"]
    train = probes.CachedViewFeatures(feats)
    head = probes.fit_view_regressor(
        train, lat, task.target, 4, schedule(20), seed=0, device=CPU, task=task.name
    )
    objects, views = torch.arange(256).repeat_interleave(4), torch.arange(4).repeat(256)
    pred = probes.predict_views(head, train, objects, views)
    assert metrics.pooled_r2(pred, task.target(lat[objects, views])) > 0.9


def test_probe_refuses_an_empty_split() -> None:
    empty = probes.CachedViewFeatures(torch.zeros(0, 3, 5))
    with pytest.raises(ValueError, match="no objects"):
        probes.fit_classifier(empty, torch.zeros(0, dtype=torch.long), 2, schedule(1), seed=0, device=CPU)


def test_each_probe_reports_what_it_trained_and_how_long(caplog: pytest.LogCaptureFixture) -> None:
    _, labels, feats = synthetic_split(16, 4, seed=1)
    with caplog.at_level("INFO"):
        probes.fit_classifier(
            probes.CachedViewFeatures(feats), labels, 4, schedule(3, ()), seed=2, device=CPU
        )
    assert any(
        re.fullmatch(r"probe classification \(seed 2\): 3 epochs on 16 objects in \d+ s", r.getMessage())
        for r in caplog.records
    )
