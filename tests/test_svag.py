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
