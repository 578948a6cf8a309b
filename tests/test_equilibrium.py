"""Function-space distances, equilibrium detection, the log-log fit, predictions, the toy."""

import json

import numpy as np
import pytest

from lrdynamics.studies.intrinsic_lr.equilibrium import (
    buffer_identity_weight_norm,
    equilibrium_angular_update,
    equilibrium_effective_lr,
    equilibrium_weight_norm,
    first_crossing_after_peak,
    fit_loglog_slope,
    half_distances,
    half_weights,
    l1_distance,
    l1_noise_floor,
    label_distribution,
    matched_floor,
    merge_time,
    time_to_equilibrium,
)
from lrdynamics.studies.intrinsic_lr.toy import (
    noisy_sphere_sgd,
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


def test_half_distances_are_the_l1_of_disjoint_halves_and_match_their_floor():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, (6, 2, 5)), rng.integers(0, 3, (6, 2, 5))  # (seed, step, sample)
    d, *floors = half_distances(a, b, 3, half_weights(6, 0, rng), block_bytes=200)  # several input blocks
    f = matched_floor(*floors)
    for t in range(2):
        expected_d = (l1_distance(a[:3, t], b[3:, t], 3) + l1_distance(a[3:, t], b[:3, t], 3)) / 2
        expected_f = (l1_distance(a[:3, t], a[3:, t], 3) + l1_distance(b[:3, t], b[3:, t], 3)) / 2
        assert d[0, t] == pytest.approx(expected_d) and f[0, t] == pytest.approx(expected_f)
    # Same distribution: E D = E F whatever the label probabilities, rare labels included,
    # where a floor rescaled by 1/sqrt(2) would be too low.
    probs = np.concatenate([rng.dirichlet(np.ones(10), 200), np.tile(np.eye(10)[0] * 0.97 + 0.003, (200, 1))])
    draws = [np.stack([[rng.choice(10, p=q) for q in probs] for _ in range(64)])[:, None] for _ in range(2)]
    d, *floors = half_distances(*draws, 10, half_weights(64, 0, rng))
    f = matched_floor(*floors)
    assert d[0, 0] == pytest.approx(f[0, 0], rel=0.05)
    # resamples keep the halves disjoint: every weight row sums to the half's size
    w = half_weights(8, 50, rng)
    assert w.shape == (51, 2, 4) and (w.sum(-1) == 4).all()


def test_first_crossing_after_the_peak():
    steps = np.arange(10)
    floor = np.full(10, 0.1)
    dist = np.array([0.1, 0.5, 0.4, 0.3, 0.2, 0.12, 0.09, 0.15, 0.08, 0.1])
    t, ratio = first_crossing_after_peak(steps, dist, floor)
    assert t == 6 and ratio == pytest.approx(5.0)  # the start (D = F: same init distribution) does not count
    assert np.isnan(first_crossing_after_peak(steps, dist + 1, floor)[0])  # never reached


def _relaxing_ensembles(rng, lr_e, steps, seeds=64, inputs=300, tau=None):
    """Two starts' labels: each member draws from the shared equilibrium distribution, or,
    with probability m(t) = exp(-t lr_e) (0 at step 0: the same init), from its start's own."""
    shared, own = rng.dirichlet(np.ones(10) * 0.5, inputs), rng.dirichlet(np.ones(10) * 0.5, (2, inputs))
    m = np.where(steps > 0, np.exp(-steps * (lr_e if tau is None else 1 / tau)), 0.0)
    out = []
    for start in range(2):
        labels = np.empty((seeds, len(steps), inputs), np.int64)
        for j, mt in enumerate(m):
            p = (1 - mt) * shared + mt * own[start]
            cum = p.cumsum(1)
            labels[:, j] = (rng.random((seeds, inputs, 1)) > cum[None]).sum(-1).clip(max=9)
        out.append(labels)
    return out


@pytest.mark.parametrize("scales_with_lr", [True, False])
def test_function_space_slope_recovers_the_scaling_it_is_given(scales_with_lr):
    """Synthetic ensembles whose starts merge at a rate ~ lr_e give a slope near -1, with a
    CI that holds it; ones that merge at a fixed rate give a slope near 0 (the rule could
    refute the conjecture)."""
    import xarray as xr

    from lrdynamics.studies.intrinsic_lr import equilibrium as eq

    rng = np.random.default_rng(3)
    lrs, steps = [0.01, 0.02, 0.04, 0.08], np.unique(np.round(np.geomspace(1, 1500, 60))).astype(int)
    steps = np.concatenate([[0], steps])
    runs = []
    for lr_e in lrs:
        for scale, labels in zip(
            (0.25, 4.0), _relaxing_ensembles(rng, lr_e, steps, tau=None if scales_with_lr else 50)
        ):
            for k, member in enumerate(labels):
                config = {"experiment": "s", "run": f"{lr_e}-{scale}-{k}", "optimizer": {"momentum": 0.0},
                          "training": {"seed": k, "init_scale": scale}}  # fmt: skip
                runs.append(xr.Dataset(
                    {"test_predictions": (("step", "sample"), member),
                     "learning_rate": ("step", np.full(len(steps), 0.1)),
                     "weight_decay": ("step", np.full(len(steps), lr_e / 0.1))},
                    coords={"step": steps, "epoch": ("step", steps / 100)},
                    attrs={"config_json": json.dumps(config)}))  # fmt: skip
    out = eq.function_space_scaling(runs, 10, n_boot=100)
    slope, lo, hi = (float(out[k]) for k in ("function_space_slope", "function_space_slope_ci_low",
                                              "function_space_slope_ci_high"))  # fmt: skip
    assert np.isfinite(out.function_space_time).all()
    if scales_with_lr:
        assert slope == pytest.approx(-1, abs=0.15) and lo < -1 < hi
    else:
        assert slope == pytest.approx(0, abs=0.15) and not lo < -1 < hi


def test_momentum_norm_predictions_on_the_noisy_sphere():
    """The toy's truth: |w|^2 tr(Sigma_B) is known. With mild curvature the noise-trace norm
    is right for momentum 0, 0.5 and 0.9, and so is the buffer identity; with a sharp valley
    the identity stays exact while the |g_B|^2 estimate misses more as momentum grows, and
    the noise-trace one (the SDE's) misses less (discrete SGD at gamma = 0 adds the signal)."""
    lr, wd = 0.1, 1e-3
    errors = {}
    for curvature in (1.0, 300.0):
        for gamma in (0.0, 0.5, 0.9):
            r = noisy_sphere_sgd(lr, wd, gamma, 20000, curvature=curvature)
            measured = np.sqrt(r["w2"])
            errors[curvature, gamma] = {
                "noise": measured / equilibrium_weight_norm(lr, wd, gamma, r["noise_sigma2"]) - 1,
                "full": measured / equilibrium_weight_norm(lr, wd, gamma, r["g2w2"]) - 1,
                "buffer": measured / buffer_identity_weight_norm(lr, wd, gamma, r["v2"]) - 1 if gamma else 0.0,
                "angle": r["angle"] / equilibrium_angular_update(lr, wd, gamma) - 1,
            }
    for gamma in (0.0, 0.5, 0.9):
        mild, sharp = errors[1.0, gamma], errors[300.0, gamma]
        assert abs(mild["noise"]) < 0.02 and abs(mild["buffer"]) < 0.01 and abs(mild["angle"]) < 0.02
        assert abs(sharp["buffer"]) < 0.01
    assert errors[300.0, 0.9]["full"] < -0.05 < errors[300.0, 0.0]["full"]  # the |g_B|^2 estimate over-predicts
    assert abs(errors[300.0, 0.9]["noise"]) < abs(errors[300.0, 0.9]["full"])
    assert errors[300.0, 0.0]["noise"] > errors[300.0, 0.9]["noise"] > 0  # the SDE's under-prediction at gamma = 0


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
        plot_random_schedules_equilibrium,
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
        "a": runs("a", schedule={"wd": 5.0e-3}, evaluation={**evaluation, "direction_anchor": 1}, grid=seeds),
        "b": runs(
            "b",
            schedule={"name": "step", "lr": 0.4, "wd": 5.0e-3, "milestones": [1], "factor": 0.25},
            evaluation=evaluation,
            grid=seeds,
        ),  # fmt: skip
    }
    noise = {"every": 1, "batches": 2}
    scaling = runs("s", evaluation={"per_decade": 6, "prediction_samples": 40}, gradient_noise=noise,
                   grid={"schedule.wd": [1.0e-2, 4.0e-2], "training.init_scale": [0.25, 4.0],
                         "training.seed": [0, 1]})  # fmt: skip
    history_runs = [*histories["a"], *histories["b"]]
    analysis = equilibrium_analysis(history_runs, scaling, [], metric="total_effective_lr", resamples=20, **RULE)
    assert check_contract(analysis.assign_attrs(config_json="{}", status="completed")) == []
    a = analysis.sel(schedule="a")  # the reference against itself: its own split-half floor
    np.testing.assert_allclose(a.l1_distance_to_reference, a.l1_noise_floor)
    assert "mixing_direction_distance" in analysis and (analysis.mixing_direction_distance[1:] > 0).all()
    assert analysis.function_space_time.dims == ("intrinsic_lr",) and "function_space_slope" in analysis
    s_runs = analysis.sel(run_id=[r for r in analysis.run_id.values if r.startswith("s/")])
    assert np.isfinite(s_runs.weight_norm_predicted).all() and np.isfinite(s_runs.weight_norm_buffer_identity).all()
    assert list(analysis.intrinsic_lr.values) == pytest.approx([0.01, 0.04])
    assert set(analysis.run_id.values) >= {"a/seed=0", "s/wd=0.04_init_scale=4.0_seed=1"}
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
    plot_random_schedules_equilibrium(FigureInputs(history_runs, {"a": "", "b": ""}), tmp_path / "r.png")
    plot_angular_update(FigureInputs(analyses=equilibrium), tmp_path / "u.png")
    plot_scale_invariant_toy(FigureInputs(analyses={"scale_invariant_toy": toy}), tmp_path / "t.png")
    assert all((tmp_path / f).stat().st_size > 20_000 for f in ("h.png", "s.png", "l.png", "u.png", "t.png", "r.png"))
