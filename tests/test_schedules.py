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


def test_piecewise_sets_lr_and_wd_per_piece():
    spec = {
        **SPEC,
        "name": "piecewise",
        "milestones": [2, 5],
        "lr_factors": [4.0, 1.0, 0.1],
        "wd_factors": [0.5, 1.0, 0.0],
    }
    s = build_schedule(spec, steps_in_epoch=10, n_steps=80)
    piece = np.repeat([0, 1, 2], [20, 30, 30])  # from update round(m x 10) on, the next piece
    np.testing.assert_allclose(s.lr, np.array([0.4, 0.1, 0.01])[piece], rtol=1e-15)
    np.testing.assert_allclose(s.wd, np.array([2.5e-4, 5e-4, 0.0])[piece], rtol=1e-15)
    assert not s.wd[50:].any()  # a factor 0 switches the WD off
    # empty factor lists leave that side at lr/wd; milestones in steps too
    lr_only = build_schedule({**spec, "wd_factors": [], "milestones": [3, 6], "unit": "step"}, 10, 8)
    np.testing.assert_allclose(lr_only.lr, [0.4] * 3 + [0.1] * 3 + [0.01] * 2)
    np.testing.assert_allclose(lr_only.wd, 5e-4)
    # the step schedule is the piecewise one with factors factor^k on its decay target
    step = build_schedule({**SPEC, "name": "step", "milestones": [2, 5]}, 10, 80)
    same = build_schedule({**SPEC, "name": "piecewise", "milestones": [2, 5], "lr_factors": [1, 0.1, 0.01]}, 10, 80)
    np.testing.assert_allclose(same.lr, step.lr, rtol=1e-15)
    np.testing.assert_array_equal(same.wd, step.wd)
    with pytest.raises(ValueError, match="2 factors for 3 pieces"):
        build_schedule({**spec, "lr_factors": [1.0, 2.0]}, 10, 80)


def test_piecewise_composes_with_intrinsic_lr_svag_and_warmup():
    spec = {**SPEC, "name": "piecewise", "milestones": [1], "lr_factors": [2.0, 1.0], "wd_factors": [3.0, 1.0]}
    matched = build_schedule({**spec, "intrinsic_lr": 1e-4}, 10, 20, momentum=0.5)
    base_wd = 1e-4 * (1 - 0.5) / 0.1  # the WD that intrinsic_lr gives, then its factors
    np.testing.assert_allclose(matched.wd, np.where(np.arange(20) < 10, 3 * base_wd, base_wd), rtol=1e-15)
    svag = build_schedule(spec, 10, 20, svag=4)  # LR lr/l, the boundary at l times its step
    assert len(svag) == 80
    np.testing.assert_allclose(svag.lr, np.where(np.arange(80) < 40, 0.2 / 4, 0.1 / 4), rtol=1e-15)
    np.testing.assert_allclose(svag.wd, np.where(np.arange(80) < 40, 1.5e-3, 5e-4), rtol=1e-15)
    warm = build_schedule({**spec, "warmup": 1.0, "warmup_start": 0.01}, 10, 20)
    assert warm.lr[0] == pytest.approx(0.2 * 0.01) and warm.lr[10] == pytest.approx(0.1)
    # its exact exponential counterpart: no WD, and back to the reference once the WD is off
    off = {**spec, "wd_factors": [1.0, 0.0], "wd_as_exp_lr": True}
    exp = build_schedule(off, 10, 20, momentum=0.0)
    assert not exp.wd.any()
    assert exp.scale[11] == pytest.approx(exp.scale[20], rel=1e-15)  # c_t stops growing without WD
    np.testing.assert_allclose(exp.lr[10:] / exp.scale[10:-1] ** 2, 0.1, rtol=1e-12)


def test_schedule_names_match_the_schema():
    from lrdynamics.config import load_schema
    from lrdynamics.engine.schedules import SCHEDULE_NAMES

    schedule = load_schema()["$defs"]["run"]["properties"]["schedule"]["properties"]
    assert tuple(schedule["name"]["enum"]) == SCHEDULE_NAMES
