"""SVAG and the gradient noise estimators, against quantities computed exactly.

The exact model: a tiny net on n = 10 examples with batch size B = 3, small enough that
every one of the C(10, 3) = 120 minibatches can be enumerated. The mean minibatch
gradient and SGD's noise covariance Sigma_B are then exact, and the estimators of the
package (driven through their real code paths) are tested against them with tolerances
derived from the sampling error.
"""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import schedule_spec
from lrdynamics.engine.gradient_noise import (
    critical_batch_size,
    measure_signal_and_noise,
    noise_batches,
    per_example_noise,
    signal_and_noise,
)
from lrdynamics.engine.models import build_model
from lrdynamics.engine.optimizers import per_batch_norm, svag_coefficients, svag_loss
from lrdynamics.engine.schedules import build_schedule

N_EXAMPLES, B = 10, 3


def exact_problem(norm: str):
    torch.manual_seed(0)
    spec = {"name": "mlp", "width": 6, "depth": 1, "norm": norm, "groups": 1, "norm_eps": 1e-5,
            "freeze_last_layer": True}  # fmt: skip
    model = build_model(spec, (1, 3, 3), 3).double()
    x = torch.randn(N_EXAMPLES, 1, 3, 3, dtype=torch.float64)
    y = torch.arange(N_EXAMPLES) % 3
    params = [p for p in model.parameters() if p.requires_grad]
    return model, x, y, params


def flat_grad(loss, params):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


def enumerated_minibatch_gradients(model, x, y, params) -> torch.Tensor:
    """The gradient of every B-subset (rows): SGD's minibatch gradient distribution."""
    model.train()
    return torch.stack(
        [flat_grad(F.cross_entropy(model(x[list(s)]), y[list(s)]), params) for s in itertools.combinations(
            range(N_EXAMPLES), B)]
    )  # fmt: skip


def svag_draws(model, x, y, params, l, m, seed):
    """m SVAG gradients through svag_loss, each from two independent uniform B-subsets."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(m):
        i1 = torch.randperm(N_EXAMPLES, generator=gen)[:B]
        i2 = torch.randperm(N_EXAMPLES, generator=gen)[:B]
        out.append(flat_grad(svag_loss(model, x[i1], y[i1], x[i2], y[i2], l), params))
    return torch.stack(out)


def test_svag_coefficients():
    for l in (1, 2, 4, 8, 32):
        c1, c2 = svag_coefficients(l)
        assert c1 + c2 == pytest.approx(1) and c1**2 + c2**2 == pytest.approx(l)
    assert svag_coefficients(1) == (1.0, 0.0)
    with pytest.raises(ValueError):
        svag_coefficients(0)


@pytest.mark.parametrize("norm", ["none", "bn"])
def test_svag_gradient_is_the_weighted_sum_of_the_two_batch_gradients(norm):
    """One forward over both batches, per-batch BN: the gradient is c1 g(b1) + c2 g(b2)."""
    model, x, y, params = exact_problem(norm)
    model.train()
    i1, i2 = torch.tensor([0, 4, 7]), torch.tensor([1, 2, 9])
    c1, c2 = svag_coefficients(4)
    g1 = flat_grad(F.cross_entropy(model(x[i1]), y[i1]), params)
    g2 = flat_grad(F.cross_entropy(model(x[i2]), y[i2]), params)
    got = flat_grad(svag_loss(model, x[i1], y[i1], x[i2], y[i2], 4), params)
    torch.testing.assert_close(got, c1 * g1 + c2 * g2, rtol=1e-10, atol=1e-12)
    # l = 1 is plain SGD on the first batch: the second has no influence at all.
    torch.testing.assert_close(flat_grad(svag_loss(model, x[i1], y[i1], x[i2], y[i2], 1), params), g1)


def test_per_batch_norm_updates_running_statistics_as_separate_passes():
    model, x, _, _ = exact_problem("bn")
    twin, _, _, _ = exact_problem("bn")
    model.train()
    twin.train()
    with per_batch_norm(model, [4, 6]):
        joint = model(x)
    separate = torch.cat([twin(x[:4]), twin(x[4:])])
    torch.testing.assert_close(joint, separate)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    # outside the block batch norm is the usual layer again (one set of statistics)
    whole = model(x)
    assert not torch.allclose(whole, separate)


@pytest.mark.parametrize("norm,l", [("none", 1), ("none", 4), ("bn", 8)])
def test_svag_estimator_has_sgd_mean_and_l_times_sgd_covariance(norm, l):
    """Statistical test of the SVAG identity on the enumerable problem.

    Without normalization the mean minibatch gradient is the full-batch gradient (checked
    too); with per-batch BN it is the mean over all B-subsets, which SVAG must keep.
    """
    model, x, y, params = exact_problem(norm)
    every = enumerated_minibatch_gradients(model, x, y, params)
    mean = every.mean(0)
    sigma_b = torch.cov(every.T, correction=0)  # exact: the population of all subsets
    if norm == "none":
        model.train()
        torch.testing.assert_close(mean, flat_grad(F.cross_entropy(model(x), y), params))
    m = 4000
    draws = svag_draws(model, x, y, params, l, m, seed=1)
    # mean: every coordinate within 4.5 standard errors (Bonferroni over ~60 coordinates)
    var = torch.diagonal(sigma_b)
    noisy = var > 1e-20 * var.max()  # coordinates of dead ReLU units have no noise at all
    torch.testing.assert_close(draws.mean(0)[~noisy], mean[~noisy])
    z = (draws.mean(0) - mean)[noisy] / torch.sqrt(l * var[noisy] / m)
    assert z.abs().max() < 4.5, f"max |z| of the mean {float(z.abs().max()):.2f}"
    # covariance: its trace and the variance along Sigma_B's top direction are l x SGD's
    centred = draws - mean
    sq = (centred**2).sum(1)
    tr_se = float(sq.std() / math.sqrt(m))
    assert abs(float(sq.mean()) - l * float(torch.trace(sigma_b))) < 5 * tr_se
    eigvals, eigvecs = torch.linalg.eigh(sigma_b)
    proj = (centred @ eigvecs[:, -1]) ** 2
    assert abs(float(proj.mean()) - l * float(eigvals[-1])) < 5 * float(proj.std() / math.sqrt(m))
    # and the test has the power to tell l from 1 (or 1 from 2)
    other = 2 if l == 1 else 1
    assert abs(float(sq.mean()) - other * float(torch.trace(sigma_b))) > 10 * tr_se


def test_signal_and_noise_are_unbiased_on_the_exact_problem():
    """E[G] = |mean g_B|^2 and E[N_B] = tr Sigma_B, through measure_signal_and_noise;
    per_example_noise then recovers tr Sigma_1 of the n examples."""
    model, x, y, params = exact_problem("none")
    every = enumerated_minibatch_gradients(model, x, y, params)
    mean = every.mean(0)
    exact_signal = float(mean @ mean)
    exact_noise = float(torch.trace(torch.cov(every.T, correction=0)))
    per_example = torch.stack(
        [flat_grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), params) for i in range(N_EXAMPLES)]
    )
    exact_per_example = float(torch.trace(torch.cov(per_example.T, correction=0)))
    gen = torch.Generator().manual_seed(3)

    def batches(k):
        for _ in range(k):
            i = torch.randperm(N_EXAMPLES, generator=gen)[:B]
            yield x[i], y[i]

    reps = 600
    estimates = np.array([measure_signal_and_noise(model, F.cross_entropy, batches(5), params) for _ in range(reps)])
    for k, exact in enumerate((exact_signal, exact_noise)):
        est = estimates[:, k]
        assert abs(est.mean() - exact) < 5 * est.std() / math.sqrt(reps), (k, est.mean(), exact)
    noise = per_example_noise(estimates[:, 1].mean(), B, N_EXAMPLES)
    assert noise == pytest.approx(exact_per_example, rel=5 * estimates[:, 1].std() / math.sqrt(reps) / exact_noise)
    # exact per-example identity: Sigma_B = (n - B)/(B (n - 1)) Sigma_1
    assert per_example_noise(exact_noise, B, N_EXAMPLES) == pytest.approx(exact_per_example, rel=1e-10)


def test_signal_and_noise_formulas():
    g = [torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0])]
    # total = (1 + 9)/2 = 5; |mean|^2 = 4; G = (2*4 - 5)/1 = 3; N = 2
    assert signal_and_noise(g) == pytest.approx((3.0, 2.0))
    with pytest.raises(ValueError):
        signal_and_noise(g[:1])
    assert noise_batches(128, None) == 200 and noise_batches(32, None) == 400 and noise_batches(128, 7) == 7
    assert critical_batch_size(100.0, 2.0) == pytest.approx(50.0)
    assert critical_batch_size(100.0, 2.0, c=2.0) == pytest.approx(150.0)
    assert critical_batch_size(100.0, -1.0) == math.inf
    assert math.isnan(per_example_noise(1.0, 10, 10))


def test_measurement_leaves_the_model_unchanged():
    model, x, y, params = exact_problem("bn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    measure_signal_and_noise(model, F.cross_entropy, [(x[:3], y[:3]), (x[3:6], y[3:6])], params)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_svag_schedule_scales_every_boundary_and_the_lr():
    spec = schedule_spec({"name": "step", "lr": 0.8, "wd": 5e-4, "milestones": [2, 3], "factor": 0.1, "unit": "epoch"})
    plain = build_schedule(spec, 10, 40)
    for l in (2, 4):
        s = build_schedule(spec, 10, 40, svag=l)
        assert len(s) == 40 * l
        np.testing.assert_allclose(s.lr, np.repeat(plain.lr, l) / l)
        np.testing.assert_array_equal(s.wd, np.repeat(plain.wd, l))
    on_steps = build_schedule({**spec, "milestones": [20], "unit": "step"}, 10, 40, svag=4)
    assert on_steps.lr[79] == pytest.approx(0.2) and on_steps.lr[80] == pytest.approx(0.02)
    cos = build_schedule({**spec, "name": "cosine", "milestones": []}, 10, 40, svag=4)
    np.testing.assert_allclose(cos.lr[::4], build_schedule({**spec, "name": "cosine", "milestones": []}, 10, 40).lr / 4)
    with pytest.raises(ValueError, match="integer >= 1"):
        build_schedule(spec, 10, 40, svag=0)


# --- the training engine with SVAG and the noise measurement -------------------------


def tiny_runs(data_dir, **experiment):
    from conftest import resolve, tiny_config

    experiment.setdefault("optimizer", {"momentum": 0.0})
    return resolve(tiny_config(data_dir, **experiment))["runs"]["tiny"]


def test_svag_runs_share_the_effective_step_axis(synth_data_dir, tmp_path):
    from lrdynamics.engine.combine import combine_runs
    from lrdynamics.engine.job import train
    from lrdynamics.engine.runfile import check_contract

    runs = tiny_runs(synth_data_dir, grid={"optimizer.svag": [1, 3]})
    out = {name: train(run, tmp_path / f"{name}.nc", threads=1) for name, run in runs.items()}
    plain, svag = out["svag=1"], out["svag=3"]
    for ds in (plain, svag):
        assert check_contract(ds) == []
    # 600 images, B=50: 12 effective steps per epoch, 2 epochs; l=3 makes 3x the updates
    assert list(svag.step.values) == list(plain.step.values) == [0, 6, 12, 18, 24]
    assert list(svag.updates_done.values) == [0, 18, 36, 54, 72]
    assert svag.attrs["total_updates"] == 72 and svag.attrs["total_steps"] == 24 and svag.attrs["svag"] == 3
    # LR per update is lr/l; the runs start from the same weights
    assert svag.learning_rate[..., 0].item() == pytest.approx(0.1 / 3)
    np.testing.assert_array_equal(svag.weight_norm[..., 0, :], plain.weight_norm[..., 0, :])
    assert svag.test_accuracy[..., -1].item() > 0.5  # it trains
    assert dict(combine_runs([plain, svag]).sizes)["svag"] == 2


def test_noise_measurement_leaves_the_trajectory_unchanged(synth_data_dir, tmp_path):
    """Measuring G and N uses its own batches and restores BN statistics: same run, bit for bit."""
    from lrdynamics.engine.job import train

    base = next(iter(tiny_runs(synth_data_dir).values()))
    measured = next(iter(tiny_runs(synth_data_dir, gradient_noise={"every": 1, "batches": 4}).values()))
    a = train(base, tmp_path / "a.nc", threads=1)
    b = train(measured, tmp_path / "b.nc", threads=1)
    for name in ("test_loss", "train_loss", "weight_norm", "minibatch_loss"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert "gradient_signal" not in a
    assert list(b.noise_step.values) == [0, 12, 24] and list(b.noise_epoch.values) == [0, 1, 2]
    assert np.isfinite(b.gradient_noise.values).all() and (b.gradient_noise.values > 0).all()
    np.testing.assert_allclose(b.gradient_noise.values, b.batch_gradient_noise.values * 50 * (600 - 1) / (600 - 50))
    assert b.attrs["noise_measurement_time_s"] > 0


def test_svag_analysis_reports_diverged_runs_instead_of_dropping_them_silently(synth_data_dir, tmp_path):
    from conftest import resolve, tiny_config
    from lrdynamics.engine.job import train
    from lrdynamics.figures.common import FigureInputs
    from lrdynamics.figures.sde_validity import plot_svag_convergence
    from lrdynamics.studies.sde_validity.svag import svag_analysis

    config = tiny_config(
        synth_data_dir,
        model={"norm": "none", "freeze_last_layer": False},
        optimizer={"momentum": 0.0},
        training={"epochs": 1},
        grid={"optimizer.svag": [1, 2], "schedule.lr": [0.05, 1.0e6]},
    )
    runs = resolve(config)["runs"]["tiny"]
    results = [train(run, tmp_path / f"{name}.nc", threads=1) for name, run in runs.items()]
    assert sorted(ds.attrs["status"] for ds in results) == ["completed", "completed", "diverged", "diverged"]
    analysis = svag_analysis(results)
    left_out = analysis.attrs["diverged_runs"]
    assert "lr=1000000.0" in left_out and left_out.count("(step") == 2
    assert list(analysis.seeds.values) == [1, 1]  # only the completed runs are averaged
    # the note goes into the title
    plot_svag_convergence(FigureInputs(analyses={"svag": analysis}), tmp_path / "svag.png")


# --- the per-example estimator (gradient_noise.estimator: per_example) -------------------


class _Examples:
    """A DeviceData of the exact problem's examples (no augmentation)."""

    def __init__(self, x, y):
        self.images, self.labels, self.n = x, y, len(y)

    def batch(self, idx, crop, flip, generator):
        return self.images[idx], self.labels[idx]


def test_example_gradients_of_a_linear_softmax_model_match_the_closed_form():
    """Linear softmax regression: the gradient of example i is (p_i - e_{y_i}) x_i^T for W
    and p_i - e_{y_i} for b; G, tr Sigma_1 and mean |g_i| over all n examples (each once)
    are then the unbiased-estimator formulas of those rows."""
    from lrdynamics.engine.gradient_noise import example_gradients, measure_example_signal_and_noise

    torch.manual_seed(1)
    model = torch.nn.Linear(4, 3).double()
    x, y = torch.randn(7, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 2])
    params = list(model.parameters())
    residual = torch.softmax(model(x), 1) - F.one_hot(y, 3).double()
    closed = torch.cat([torch.einsum("nc,nd->ncd", residual, x).flatten(1), residual], dim=1).detach()
    got = torch.cat(list(example_gradients(model, F.cross_entropy, x, y, params, chunk=3)))
    torch.testing.assert_close(got, closed, rtol=1e-12, atol=1e-12)
    signal, noise, norm = measure_example_signal_and_noise(model, F.cross_entropy, (x, y), params)
    s, mean = len(y), closed.mean(0)
    sq = (closed * closed).sum(1)
    assert signal == pytest.approx(float((s * mean @ mean - sq.mean()) / (s - 1)), rel=1e-12)
    assert noise == pytest.approx(float(sq.sum() / (s - 1) - s * (mean @ mean) / (s - 1)), rel=1e-12)
    assert noise == pytest.approx(float(torch.trace(torch.cov(closed.T))), rel=1e-10)
    assert norm == pytest.approx(float(sq.sqrt().mean()), rel=1e-12)


@pytest.mark.parametrize("name", ["resnet56", "vgg16"])
def test_example_gradients_match_a_loop_over_examples_in_train_mode(name):
    """The adaptive-SDE nets with BatchNorm, in train mode with a batch of one as the
    authors measure: vmap equals a loop of single-example backward passes, and the
    measurement leaves the model (mode, running statistics) as it found it."""
    from lrdynamics.engine.gradient_noise import example_gradients, measure_example_signal_and_noise

    torch.manual_seed(0)
    spec = {"name": name, "width_multiplier": 0.125, "norm": "bn", "groups": 1, "norm_eps": 1e-5, "affine": True,
            "freeze_last_layer": False}  # fmt: skip
    model = build_model(spec, (3, 32, 32), 10).double()
    params = [p for p in model.parameters() if p.requires_grad]
    x, y = torch.randn(5, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 3, 5, 7, 9])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    signal, noise, norm = measure_example_signal_and_noise(model, F.cross_entropy, (x, y), params, chunk=2)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.train()
    loop = torch.stack([flat_grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), params) for i in range(5)])
    got = torch.cat(list(example_gradients(model, F.cross_entropy, x, y, params, chunk=2)))
    torch.testing.assert_close(got, loop, rtol=1e-9, atol=1e-12)
    assert noise == pytest.approx(float(loop.var(0).sum()), rel=1e-9)  # tr of the unbiased covariance
    assert norm == pytest.approx(float(loop.norm(dim=1).mean()), rel=1e-9)


def test_minibatch_noise_is_the_per_example_noise_over_b():
    """On the exact problem (n = 10, B = 3): the minibatch meter's tr Sigma_B and the
    per-example meter's tr Sigma_1 (single examples with replacement) are unbiased for the
    enumerated values, and tr Sigma_B = tr Sigma_1 (n - B)/(B (n - 1)) (~ tr Sigma_1 / B for
    n >> B) holds between the two meters within their sampling error."""
    from lrdynamics.engine.gradient_noise import NoiseMeter

    model, x, y, params = exact_problem("none")
    every = enumerated_minibatch_gradients(model, x, y, params)
    exact_batch = float(torch.trace(torch.cov(every.T, correction=0)))
    singles = torch.stack([flat_grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), params) for i in range(10)])
    exact_single = float(torch.trace(torch.cov(singles.T, correction=0)))
    assert exact_batch == pytest.approx(exact_single * (N_EXAMPLES - B) / (B * (N_EXAMPLES - 1)), rel=1e-10)
    data = _Examples(x, y)
    minibatch = NoiseMeter(data, B, False, False, torch.Generator().manual_seed(5), 5, math.sqrt(2))
    single = NoiseMeter(data, B, False, False, torch.Generator().manual_seed(6), None, math.sqrt(2),
                        estimator="per_example", samples=20)  # fmt: skip
    assert single.batches == 20 and single.draw == 1
    reps = 400
    rows_b = [minibatch.measure(model, params, F.cross_entropy) for _ in range(reps)]
    rows_1 = [single.measure(model, params, F.cross_entropy) for _ in range(reps)]
    b_noise = np.array([r["batch_gradient_noise"] for r in rows_b])
    s_noise = np.array([r["gradient_noise"] for r in rows_1])
    implied = np.array([r["batch_gradient_noise"] for r in rows_1])
    se_b, se_1 = b_noise.std() / math.sqrt(reps), s_noise.std() / math.sqrt(reps)
    assert abs(b_noise.mean() - exact_batch) < 5 * se_b
    assert abs(s_noise.mean() - exact_single) < 5 * se_1
    np.testing.assert_allclose(implied, s_noise * (N_EXAMPLES - B) / (B * (N_EXAMPLES - 1)))
    assert abs(b_noise.mean() - implied.mean()) < 5 * math.hypot(se_b, implied.std() / math.sqrt(reps))
    # the minibatch meter's tr Sigma_1 agrees with the directly measured one
    b_single = np.array([r["gradient_noise"] for r in rows_b])
    assert abs(b_single.mean() - s_noise.mean()) < 5 * math.hypot(b_single.std() / math.sqrt(reps), se_1)
    assert all(math.isnan(r["example_gradient_norm"]) for r in rows_b)
    assert all(r["example_gradient_norm"] > 0 for r in rows_1)
    # the signal G: both unbiased for |grad L|^2
    exact_signal = float(every.mean(0) @ every.mean(0))
    for rows in (rows_b, rows_1):
        g = np.array([r["gradient_signal"] for r in rows])
        assert abs(g.mean() - exact_signal) < 5 * g.std() / math.sqrt(reps)


def test_per_example_meter_draws_single_examples_with_replacement():
    from lrdynamics.engine.gradient_noise import NoiseMeter, noise_samples

    x, y = torch.arange(4.0).view(4, 1), torch.arange(4)
    meter = NoiseMeter(_Examples(x, y), 3, False, False, torch.Generator().manual_seed(0), 7, 2.0,
                       estimator="per_example")  # fmt: skip
    draws = list(meter.minibatches())
    assert meter.batches == 1000 and len(draws) == 1000 and all(len(d[1]) == 1 for d in draws)
    counts = np.bincount(torch.cat([d[1] for d in draws]).numpy(), minlength=4)
    assert counts.min() > 200  # all four examples, each about 250 times
    assert noise_samples("per_example", 50) == 50 and noise_samples("minibatch", None) == 1000
    with pytest.raises(ValueError, match="estimator"):
        noise_samples("bogus", None)


# --- the LSR analysis's noise window (figures.lsr_validity.noise_window) ----------------


def _lsr_run(batch_size, epochs, signal, noise, status="completed", c=2**0.5):
    """A synthetic LSR run file: noise measurements at ``epochs`` with G, N given per
    measurement (B* = (C^2 - 1) N/G)."""
    import json

    import xarray as xr

    epochs = np.asarray(epochs, dtype=float)
    signal, noise = np.asarray(signal, dtype=float), np.asarray(noise, dtype=float)
    bstar = np.where(signal > 0, (c * c - 1) * noise / np.where(signal > 0, signal, 1), np.inf)
    ds = xr.Dataset(
        {
            "gradient_signal": ("noise_step", signal),
            "gradient_noise": ("noise_step", noise),
            "critical_batch_size": ("noise_step", bstar),
            "test_accuracy": ("step", [0.1, 0.5]),
        },
        coords={"noise_step": np.arange(len(epochs)) * 10, "noise_epoch": ("noise_step", epochs), "step": [0, 1]},
    )
    config = json.dumps({"gradient_noise": {"threshold_c": c}})
    ds.attrs.update(experiment="net", run=f"batch_size={batch_size}", status=status, batch_size=batch_size,
                    lr0=0.1 * batch_size / 128, config_json=config)  # fmt: skip
    return ds


def test_lsr_noise_window_picks_exactly_the_measurements_inside_it():
    from lrdynamics.studies.sde_validity.lsr import lsr_analysis

    epochs = [0, 100, 199.5, 200, 225, 249.9, 250, 300]
    # B* = N/G (C = sqrt 2): 1000 outside the window, 10, 20, 30 at epochs 200, 225, 249.9
    signal = [1.0] * 8
    noise_a = [1000, 1000, 1000, 10, 20, 30, 1000, 1000]
    noise_b = [1000, 1000, 1000, 40, 50, 60, 1000, 1000]
    runs = [_lsr_run(64, epochs, signal, noise_a), _lsr_run(128, epochs, signal, noise_b)]
    out = lsr_analysis(runs, late_fraction=0.5, noise_window=[200, 250]).sel(experiment="net")
    np.testing.assert_allclose(out.late_critical_batch_size.values, [20.0, 50.0])
    assert float(out.predicted_critical_batch_size) == pytest.approx(35.0)
    np.testing.assert_allclose(out.window_gradient_noise.values, [20.0, 50.0])
    np.testing.assert_allclose(out.window_gradient_signal.values, [1.0, 1.0])
    np.testing.assert_allclose(out.window_critical_batch_size.values, [20.0, 50.0])
    assert "200 <= noise_epoch < 250" in out.late_critical_batch_size.attrs["long_name"]
    assert "200 <= noise_epoch < 250" in out.attrs["noise_window"]
    # the paper's B* of the window means differs from the median of B* when G varies
    g = [1, 1, 1, 1.0, 2.0, 4.0, 1, 1]
    out = lsr_analysis([_lsr_run(64, epochs, g, [1, 1, 1, 8, 8, 8, 1, 1])], late_fraction=0.5,
                       noise_window=[200, 250]).sel(experiment="net")  # fmt: skip
    assert float(out.late_critical_batch_size.squeeze()) == pytest.approx(4.0)  # median of 8, 4, 2
    assert float(out.window_critical_batch_size.squeeze()) == pytest.approx(8 / (7 / 3))
    # default (null): today's late_fraction rule, epoch >= (1 - 0.5) x 300 = 150, no window variables
    out = lsr_analysis(runs, late_fraction=0.5).sel(experiment="net")
    # epochs 199.5 .. 300: B* 1000, 10, 20, 30, 1000, 1000 (median 515) and 1000, 40, 50, 60, 1000, 1000
    np.testing.assert_allclose(out.late_critical_batch_size.values, [515.0, 530.0])
    assert "window_critical_batch_size" not in out and "last 50% of training" in out.attrs["noise_window"]


def test_lsr_noise_window_without_measurements_is_an_error_or_nan_for_a_diverged_run():
    from lrdynamics.studies.sde_validity.lsr import lsr_analysis

    runs = [_lsr_run(64, [0, 10, 20], [1, 1, 1], [5, 6, 7]), _lsr_run(128, [0, 10, 20], [1, 1, 1], [5, 6, 7])]
    with pytest.raises(ValueError, match=r"batch size 64: no noise measurement with 200 <= epoch < 250.*0, 10, 20"):
        lsr_analysis(runs, late_fraction=0.5, noise_window=[200, 250])
    with pytest.raises(ValueError, match="start < end"):
        lsr_analysis(runs, late_fraction=0.5, noise_window=[20, 10])
    # the window is half-open: [10, 20) holds only the measurement at epoch 10
    out = lsr_analysis(runs, late_fraction=0.5, noise_window=[10, 20]).sel(experiment="net")
    np.testing.assert_allclose(out.late_critical_batch_size.values, [6.0, 6.0])
    # a diverged run stops early: NaN in the window, with a warning; the others still predict
    runs = [_lsr_run(64, [0, 10, 20], [1, 1, 1], [5, 6, 7]), _lsr_run(128, [0], [1], [5], status="diverged")]
    with pytest.warns(UserWarning, match="batch size 128.*diverged"):
        out = lsr_analysis(runs, late_fraction=0.5, noise_window=[10, 30]).sel(experiment="net")
    assert np.isnan(out.late_critical_batch_size.sel(batch_size=128)) and np.isnan(
        out.window_critical_batch_size.sel(batch_size=128))  # fmt: skip
    assert float(out.predicted_critical_batch_size) == pytest.approx(6.5)
