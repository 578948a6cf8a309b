import numpy as np
import pytest

from lrdynamics.schedules import build_schedule, steps_per_epoch, total_steps


def test_steps_per_epoch_matches_dataloader_semantics():
    assert steps_per_epoch(50000, 128, drop_last=False) == 391  # the papers' 391 steps/epoch
    assert steps_per_epoch(50000, 128, drop_last=True) == 390
    assert steps_per_epoch(100, 50, drop_last=False) == 2
    with pytest.raises(ValueError, match="no full batch"):
        steps_per_epoch(10, 50, drop_last=True)


def test_step_schedule_decays_at_milestones():
    spec = {"name": "step", "lr": 0.1, "wd": 5e-4, "milestones": [2, 3], "factor": 0.1, "unit": "epoch"}
    s = build_schedule(spec, steps_in_epoch=10, n_steps=total_steps(4, 10))
    assert len(s) == 40
    np.testing.assert_allclose(s.lr[:20], 0.1)
    np.testing.assert_allclose(s.lr[20:30], 0.01)
    np.testing.assert_allclose(s.lr[30:], 0.001)
    np.testing.assert_allclose(s.wd, 5e-4)


def test_step_milestones_in_steps_and_constant():
    spec = {"name": "step", "lr": 1.0, "wd": 0.0, "milestones": [5], "factor": 0.5, "unit": "step"}
    s = build_schedule(spec, steps_in_epoch=3, n_steps=8)
    assert list(s.lr) == [1.0] * 5 + [0.5] * 3
    c = build_schedule({**spec, "name": "constant"}, 3, 8)
    assert set(c.lr) == {1.0}


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="allowed: constant, step"):
        build_schedule({"name": "cosine", "lr": 1.0, "wd": 0.0}, 3, 8)
