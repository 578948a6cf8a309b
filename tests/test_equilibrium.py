"""Function-space distances, equilibrium detection, the log-log fit, predictions, the toy."""

import numpy as np
import pytest

from lrdynamics.studies.intrinsic_lr.equilibrium import (
    equilibrium_angular_update,
    equilibrium_effective_lr,
    equilibrium_weight_norm,
    fit_loglog_slope,
    l1_distance,
    l1_noise_floor,
    label_distribution,
    merge_time,
    time_to_equilibrium,
)
from lrdynamics.studies.intrinsic_lr.toy import (
    scale_invariant_dataset,
    scale_invariant_gd,
    scale_invariant_loss_and_grad,
)

RULE = {"tolerance": 0.1, "final_fraction": 0.2}  # the equilibrium rule (the schema's defaults)


def test_label_distribution_and_l1():
    a = np.array([[0, 1], [0, 1], [1, 1], [0, 2]])  # 4 seeds, 2 test inputs
    p = label_distribution(a, 3)
    np.testing.assert_allclose(p, [[0.75, 0.25, 0], [0, 0.75, 0.25]])
    assert l1_distance(a, a, 3) == 0
    b = np.array([[2, 0], [2, 0]])
    assert l1_distance(a, b, 3) == pytest.approx(2.0)  # disjoint supports on both inputs
    assert l1_noise_floor(a, 3) == pytest.approx((1.0 + 1.0) / 2)  # halves [[0,1],[0,1]] vs [[1,1],[0,2]]


def test_noise_floor_shrinks_with_more_seeds():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=300)

    def draw(n):  # noqa: E306
        return np.array([[rng.choice(10, p=p) for p in probs] for _ in range(n)])

    assert l1_noise_floor(draw(40), 10) < 0.6 * l1_noise_floor(draw(8), 10)


def test_time_to_equilibrium_rule():
    steps = np.arange(0, 1000, 10)
    curve = 1 - np.exp(-steps / 100)  # relaxes with time constant 100
    t = time_to_equilibrium(steps, curve, **RULE)
    assert t == pytest.approx(100 * np.log(10), abs=10)  # |1 - c| <= 0.1 from t = 100 ln 10
    assert np.isnan(time_to_equilibrium(steps, steps.astype(float), **RULE))  # never settles
    assert time_to_equilibrium(steps, np.ones_like(steps, dtype=float), **RULE) == 0
    spiky = curve.copy()
    spiky[70] = 3.0  # leaves the band late: equilibrium only after that
    assert time_to_equilibrium(steps, spiky, **RULE) == 710


def test_loglog_slope_recovers_a_power_law_with_ci():
    x = np.repeat([1e-3, 2e-3, 4e-3, 8e-3], 3)
    y = 2.0 / x * np.exp(np.random.default_rng(1).normal(0, 0.05, len(x)))
    fit = fit_loglog_slope(x, y)
    assert fit["slope_ci_low"] < -1 < fit["slope_ci_high"]
    assert fit["slope"] == pytest.approx(-1, abs=0.1)
    assert fit["slope_ci_high"] - fit["slope_ci_low"] < 0.3
    assert np.isnan(fit_loglog_slope([1, 1], [2, 3])["slope"])


def test_equilibrium_predictions():
    assert equilibrium_angular_update(0.1, 5e-4, 0.0) == pytest.approx(np.sqrt(1e-4))
    assert equilibrium_angular_update(0.1, 5e-4, 0.9) == pytest.approx(np.sqrt(1e-4 / 1.9))
    # no momentum (docs/science.md section 3): |w|^4 = eta sigma2 / (2 lambda); effective LR = sqrt(2 eta lambda)/sigma
    norm = equilibrium_weight_norm(0.1, 5e-4, 0.0, sigma2=4.0)
    assert norm**4 == pytest.approx(0.1 * 4.0 / 1e-3)
    assert equilibrium_effective_lr(0.1, 5e-4, 0.0, 4.0) == pytest.approx(np.sqrt(2 * 0.1 * 5e-4) / 2.0)


def test_toy_gradient_is_exact_and_scale_invariant():
    w = np.array([0.7, -1.3])
    loss, grad = scale_invariant_loss_and_grad(w)
    eps = 1e-6

    def loss_at(v):  # noqa: E306
        return scale_invariant_loss_and_grad(v)[0]

    numeric = [(loss_at(w + eps * e) - loss_at(w - eps * e)) / (2 * eps) for e in np.eye(2)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6)
    assert np.dot(grad, w) == pytest.approx(0, abs=1e-12)
    assert scale_invariant_loss_and_grad(3 * w)[0] == pytest.approx(loss)


def test_toy_gd_converges_without_wd_and_not_with_it():
    no_wd = scale_invariant_gd(lr=0.1, wd=0.0, steps=3000)
    wd = scale_invariant_gd(lr=0.1, wd=0.1, steps=3000)
    assert no_wd["loss"][-1000:].max() < 1e-12
    assert wd["loss"][-1000:].max() > 0.3  # still jumping back up late in training
    assert (np.diff(no_wd["weight_norm"]) >= -1e-15).all()  # GD on a scale-invariant loss: norm grows


def test_merge_time_ignores_a_shared_drift():
    steps = np.arange(0, 2000, 10)
    drift = 1 + steps / 2000  # the equilibrium level itself creeps up by 2x
    above = drift * (1 + 15 * np.exp(-steps / 100))  # relaxes from above
    below = drift * (1 - 0.9 * np.exp(-steps / 100))  # and from below
    t = merge_time(steps, above, below, **RULE)
    # (1 + 15 e) / (1 - 0.9 e) <= 1.1 with e = exp(-t/100): e <= 0.1/15.99, t >= 100 ln 159.9 = 507
    assert 500 <= t <= 520
    # a single curve with that drift never settles within 10% of its final level in time
    assert np.isnan(time_to_equilibrium(steps, above, **RULE)) or time_to_equilibrium(steps, above, **RULE) > 1000
    assert np.isnan(merge_time(steps, above, 2 * below, **RULE))  # runs that never meet
    noisy = above * (1 + 0.3 * (steps == 1500))  # a late excursion does not move the meeting
    assert merge_time(steps, noisy, below, **RULE) == t


def test_equilibrium_analysis_and_figures_on_tiny_runs(synth_data_dir, tmp_path):

    from conftest import resolve, tiny_config
    from lrdynamics.engine.job import train
    from lrdynamics.engine.runfile import check_contract
    from lrdynamics.figures.common import FigureInputs
    from lrdynamics.figures.intrinsic_lr import (
        plot_angular_update,
        plot_equilibrium_time_scaling,
        plot_intrinsic_lr_equilibrium,
        plot_scale_invariant_toy,
        plot_small_lr_generalization,
    )
    from lrdynamics.studies.intrinsic_lr.equilibrium import equilibrium_analysis

    def runs(name, **experiment):
        out = []
        for run_name, run in resolve(tiny_config(synth_data_dir, **experiment))["runs"]["tiny"].items():
            run["experiment"] = name
            out.append(train(run, tmp_path / f"{name}-{run_name}.nc", threads=1))
        return out

    evaluation = {"every": 3, "unit": "step", "prediction_samples": 40}
    seeds = {"training.seed": [0, 1]}
    histories = {
        "a": runs("a", schedule={"wd": 5.0e-3}, evaluation=evaluation, grid=seeds),
        "b": runs(
            "b",
            schedule={"name": "step", "lr": 0.4, "wd": 5.0e-3, "milestones": [1], "factor": 0.25},
            evaluation=evaluation,
            grid=seeds,
        ),  # fmt: skip
    }
    scaling = runs("s", evaluation={"every": 3, "unit": "step"},
                   grid={"schedule.wd": [1.0e-2, 4.0e-2], "training.init_scale": [0.25, 4.0]})  # fmt: skip
    history_runs = [*histories["a"], *histories["b"]]
    analysis = equilibrium_analysis(history_runs, scaling, [], metric="total_effective_lr", **RULE)
    assert check_contract(analysis.assign_attrs(config_json="{}", status="completed")) == []
    assert analysis.l1_distance_to_reference.sel(schedule="a").max() == 0  # the reference vs itself
    assert list(analysis.intrinsic_lr.values) == pytest.approx([0.01, 0.04])
    assert set(analysis.run_id.values) >= {"a/seed=0", "s/wd=0.04_init_scale=4.0"}
    lr_e = analysis.run_intrinsic_lr.values  # = eta*lambda/(1-gamma), gamma = 0.9 here
    np.testing.assert_allclose(analysis.angular_update_predicted, np.sqrt(2 * lr_e * 0.1 / 1.9))
    assert (analysis.angular_update_measured > 0).all()
    assert not analysis.reached_equilibrium.any()  # 24 steps < 1/intrinsic LR (>= 25 steps)
    toy = scale_invariant_dataset(lr=0.1, wds=[0.0, 0.1], steps=50)
    np.testing.assert_array_equal(toy.loss.sel(wd=0.1), scale_invariant_gd(lr=0.1, wd=0.1, steps=50)["loss"])
    equilibrium = {"equilibrium": analysis}
    plot_intrinsic_lr_equilibrium(FigureInputs(history_runs, {"a": "", "b": ""}, equilibrium), tmp_path / "h.png")
    plot_equilibrium_time_scaling(FigureInputs(scaling, {"s": ""}, equilibrium), tmp_path / "s.png")
    plot_small_lr_generalization(FigureInputs(history_runs, {"a": "", "b": ""}), tmp_path / "l.png")
    plot_angular_update(FigureInputs(analyses=equilibrium), tmp_path / "u.png")
    plot_scale_invariant_toy(FigureInputs(analyses={"scale_invariant_toy": toy}), tmp_path / "t.png")
    assert all((tmp_path / f).stat().st_size > 20_000 for f in ("h.png", "s.png", "l.png", "u.png", "t.png"))
