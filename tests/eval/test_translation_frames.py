"""Translation targets of -T datasets in both of EquiCaps' frames: object (t_b - t_a) and base (R_b t_b - R_a t_a)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from sie.eval import tasks


def test_base_frame_translation_target_against_scipy() -> None:
    rng = np.random.default_rng(0)
    lat = rng.uniform(-1.5, 1.5, (6, 2, 10))
    target = tasks.translation_base_pair_target(torch.from_numpy(lat)).double().numpy()
    for i in range(6):
        # The translation column of the base-frame pose R T is R t (AberdeenML/EquiCaps get_base_frame_matrix).
        moved = [Rotation.from_euler("xyz", lat[i, v, :3]).as_matrix() @ lat[i, v, 7:10] for v in (0, 1)]
        np.testing.assert_allclose(target[i], moved[1] - moved[0], atol=1e-6)
    # With no rotation the two frames agree.
    lat[..., :3] = 0
    np.testing.assert_allclose(
        tasks.translation_base_pair_target(torch.from_numpy(lat)).numpy(),
        tasks.translation_pair_target(torch.from_numpy(lat)).numpy(),
        atol=1e-6,
    )


def test_base_frame_task_needs_translations() -> None:
    assert [t.name for t in tasks.regression_tasks_for(7, ("translation", "translation_base"))] == []
    names = [t.name for t in tasks.regression_tasks_for(10, ("translation", "translation_base"))]
    assert names == ["translation", "translation_base"]
    assert tasks.REGRESSION_TASKS["translation_base"].out_dim == 3
