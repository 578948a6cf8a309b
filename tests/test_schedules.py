import numpy as np
import pytest

from conftest import schedule_spec
from lrdynamics.engine.schedules import alpha_root, build_schedule, steps_per_epoch, total_steps


def test_steps_per_epoch_matches_dataloader_semantics():
    assert steps_per_epoch(50000, 128, drop_last=False) == 391  # the papers' 391 steps/epoch
    assert steps_per_epoch(50000, 128, drop_last=True) == 390
    assert steps_per_epoch(100, 50, drop_last=False) == 2
    with pytest.raises(ValueError, match="no full batch"):
        steps_per_epoch(10, 50, drop_last=True)


def test_step_schedule_decays_at_milestones():
    spec = schedule_spec({"name": "step", "lr": 0.1, "wd": 5e-4, "milestones": [2, 3], "factor": 0.1, "unit": "epoch"})
    s = build_schedule(spec, steps_in_epoch=10, n_steps=total_steps(4, 10))
    assert len(s) == 40
    np.testing.assert_allclose(s.lr[:20], 0.1)
    np.testing.assert_allclose(s.lr[20:30], 0.01)
    np.testing.assert_allclose(s.lr[30:], 0.001)
    np.testing.assert_allclose(s.wd, 5e-4)


def test_step_milestones_in_steps_and_constant():
    spec = schedule_spec({"name": "step", "lr": 1.0, "wd": 0.0, "milestones": [5], "factor": 0.5, "unit": "step"})
    s = build_schedule(spec, steps_in_epoch=3, n_steps=8)
    assert list(s.lr) == [1.0] * 5 + [0.5] * 3
    c = build_schedule({**spec, "name": "constant"}, 3, 8)
    assert set(c.lr) == {1.0}


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="allowed: constant, step, cosine, exponential"):
        build_schedule(schedule_spec({"name": "warp", "lr": 1.0, "wd": 0.0}), 3, 8)


SPEC = schedule_spec({"name": "constant", "lr": 0.1, "wd": 5e-4, "milestones": [], "factor": 0.1, "unit": "epoch"})


def test_alpha_matches_the_papers_worked_number():
    alpha = alpha_root(0.1, 5e-4, 0.9)
    assert alpha == pytest.approx(0.9994977, abs=1e-7)
    assert alpha**-2 == pytest.approx(1.0010053, abs=1e-7)  # LR growth per step
    assert alpha ** (-2 * 391) == pytest.approx(1.481, abs=1e-3)  # per epoch: "0.1 x 1.481^t"
    assert alpha_root(0.1, 5e-4, 0.0) == pytest.approx(1 - 0.1 * 5e-4)
    for lr, wd in ((1.0, 1.0), (10.0, 1.0), (1.0, 3.0)):
        with pytest.raises(ValueError, match="too large"):
            alpha_root(lr, wd, 0.9)


def test_counterpart_of_constant_is_the_papers_exp_lr():
    s = build_schedule({**SPEC, "wd_as_exp_lr": True}, 10, 500, momentum=0.9)
    alpha = alpha_root(0.1, 5e-4, 0.9)
    t = np.arange(500)
    # (the recursion's products drift from the closed form by ~1e-12 over 500 steps)
    np.testing.assert_allclose(s.lr, 0.1 * alpha ** (-2.0 * t - 1), rtol=1e-10)
    np.testing.assert_allclose(s.scale, alpha ** -np.arange(501.0), rtol=1e-10)
    assert not s.wd.any()
    assert s.buffer_init == pytest.approx(-(1 - alpha) / (0.1 * alpha), rel=1e-12)  # docs/science.md section 2
    plain = build_schedule({**SPEC, "name": "exponential"}, 10, 500, momentum=0.9)
    np.testing.assert_allclose(plain.lr, s.lr, rtol=1e-10)
    assert plain.buffer_init is None  # the plain Exp LR starts its buffer at zero
    no_momentum = build_schedule({**SPEC, "wd_as_exp_lr": True}, 10, 50, momentum=0.0)
    np.testing.assert_allclose(no_momentum.lr, 0.1 * (1 - 5e-5) ** (-2.0 * np.arange(50) - 1), rtol=1e-12)
    assert no_momentum.buffer_init is None


def test_texp_ratio_relaxes_to_each_phases_alpha():
    spec = {**SPEC, "name": "step", "milestones": [10, 20], "wd_as_exp_lr": True}
    s = build_schedule(spec, 100, 3000, momentum=0.9)
    ratio = s.lr[1:] / s.lr[:-1]
    for phase_lr, t in ((0.1, 900), (0.01, 1900), (0.001, 2900)):
        assert ratio[t] == pytest.approx(alpha_root(phase_lr, 5e-4, 0.9) ** -2, rel=1e-12)
    assert ratio[999] == pytest.approx(0.1, rel=0.01)  # the decay itself, nearly instant


def test_exponential_with_instant_decays_keeps_its_growth():
    spec = {**SPEC, "name": "exponential", "milestones": [5], "factor": 0.1}
    s = build_schedule(spec, 10, 100, momentum=0.9)
    ratio = s.lr[1:] / s.lr[:-1]
    growth = alpha_root(0.1, 5e-4, 0.9) ** -2
    assert ratio[49] == pytest.approx(0.1 * growth)
    np.testing.assert_allclose(np.delete(ratio, 49), growth)


def test_cosine_decay_target_and_intrinsic_lr():
    cos = build_schedule({**SPEC, "name": "cosine"}, 10, 100)
    assert cos.lr[0] == 0.1 and cos.lr[50] == pytest.approx(0.05) and cos.lr[-1] < 1e-4
    on_wd = build_schedule({**SPEC, "name": "step", "milestones": [5], "decay_target": "wd"}, 10, 100)
    np.testing.assert_allclose(on_wd.lr, 0.1)
    np.testing.assert_allclose(on_wd.wd, np.where(np.arange(100) < 50, 5e-4, 5e-5))
    matched = build_schedule({**SPEC, "lr": 0.4, "intrinsic_lr": 5e-4}, 10, 10, momentum=0.9)
    assert matched.lr[0] * matched.wd[0] / (1 - 0.9) == pytest.approx(5e-4)
