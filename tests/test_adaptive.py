"""Adam and RMSprop: the square-root scaling rule, adaptive SVAG, warm-up, config errors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import resolve, schedule_spec, tiny_config
from lrdynamics.config import ConfigError
from lrdynamics.engine.adaptive import adaptive_svag_hyperparameters, scaled_beta, sqrt_scaling_rule, updates_per_step
from lrdynamics.engine.schedules import build_schedule

ADAM = {"name": "adam", "momentum": 0.0, "beta2": 0.99}


def adaptive_runs(data_dir, optimizer=ADAM, **experiment):
    experiment.setdefault("optimizer", optimizer)
    experiment.setdefault("schedule", {"name": "constant", "lr": 1.0e-3, "wd": 1.0e-4})
    return resolve(tiny_config(data_dir, **experiment))["runs"]["tiny"]


# --- the transforms against their formulas ----------------------------------------------


@pytest.mark.parametrize("kappa", [0.25, 2.0, 4.0, 8.0])
def test_sqrt_scaling_rule_formulas(kappa):
    lr, b1, b2, eps = 1e-3, 0.95, 0.999, 1e-8
    out = sqrt_scaling_rule(lr, b1, b2, eps, kappa)
    assert out["lr"] == pytest.approx(lr * math.sqrt(kappa), rel=1e-15)
    assert 1 - out["beta1"] == pytest.approx(kappa * (1 - b1), rel=1e-12)
    assert 1 - out["beta2"] == pytest.approx(kappa * (1 - b2), rel=1e-12)
    assert out["eps"] == pytest.approx(eps / math.sqrt(kappa), rel=1e-15)
    assert sqrt_scaling_rule(lr, b1, b2, eps, 1.0) == {"lr": lr, "beta1": b1, "beta2": b2, "eps": eps}


def test_scaled_beta_keeps_rmsprop_without_first_moment_and_refuses_beta_out_of_range():
    assert scaled_beta(0.0, 8.0) == 0.0
    # 1 - 10*0.1 = 0 is allowed, 10.5 not
    assert scaled_beta(0.9, 10.0) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="outside"):
        scaled_beta(0.9, 10.5)


@pytest.mark.parametrize("l", [1, 2, 4, 8])
def test_adaptive_svag_hyperparameters_formulas(l):
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    out = adaptive_svag_hyperparameters(lr, b1, b2, eps, l)
    assert out["lr"] == pytest.approx(lr / l, rel=1e-15)
    assert 1 - out["beta1"] == pytest.approx((1 - b1) / l**2, rel=1e-9)
    assert 1 - out["beta2"] == pytest.approx((1 - b2) / l**2, rel=1e-9)
    assert out["eps"] == pytest.approx(eps * l, rel=1e-15)
    assert updates_per_step({"name": "adam", "svag": l}) == l * l
    assert updates_per_step({"name": "rmsprop", "svag": l}) == l * l
    assert updates_per_step({"name": "sgd", "svag": l}) == l
    if l == 1:
        assert out == {"lr": lr, "beta1": b1, "beta2": b2, "eps": eps}


def test_rmsprop_has_no_first_moment_whatever_beta1_says(synth_data_dir):
    runs = adaptive_runs(synth_data_dir, {**ADAM, "beta1": 0.95}, grid={"optimizer.name": ["adam", "rmsprop"]})
    assert runs["name=adam"]["optimizer"]["beta1"] == 0.95
    assert runs["name=rmsprop"]["optimizer"]["beta1"] == 0.0


def test_config_resolves_the_sqrt_rule_for_adam_and_rmsprop(synth_data_dir):
    grid = {
        "optimizer.name": ["adam", "rmsprop"],
        "training.batch_size": [25, 100],
        "schedule.scaling_rule": ["none", "linear", "sqrt"],
    }
    runs = adaptive_runs(
        synth_data_dir,
        schedule={"name": "constant", "lr": 1e-3, "reference_batch_size": 25},
        grid=grid,
    )
    assert len(runs) == 12
    for run in runs.values():
        opt, sched = run["optimizer"], run["schedule"]
        kappa = run["training"]["batch_size"] / 25
        beta1 = 0.9 if opt["name"] == "adam" else 0.0
        rule = sched["scaling_rule"]
        assert sched["reference_lr"] == 1e-3
        if rule == "sqrt":
            assert sched["lr"] == pytest.approx(1e-3 * math.sqrt(kappa))
            assert 1 - opt["beta1"] == pytest.approx(kappa * (1 - beta1)) if beta1 else opt["beta1"] == 0.0
            assert 1 - opt["beta2"] == pytest.approx(kappa * 0.01)
            assert opt["eps"] == pytest.approx(1e-8 / math.sqrt(kappa))
            assert (opt["reference_beta1"], opt["reference_beta2"], opt["reference_eps"]) == (beta1, 0.99, 1e-8)
        else:  # the linear rule of SGD scales the LR only; none changes nothing
            assert sched["lr"] == pytest.approx(1e-3 * (kappa if rule == "linear" else 1.0))
            assert (opt["beta1"], opt["beta2"], opt["eps"]) == (beta1, 0.99, 1e-8)


# --- the optimizers -------------------------------------------------------------------


def _reference_adam(w, grads, lr, beta1, beta2, eps, wd):
    """Adam with coupled weight decay and bias correction, written out (float64)."""
    m, v, w = np.zeros_like(w), np.zeros_like(w), w.copy()
    for t, g in enumerate(grads, start=1):
        g = g + wd * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_engine_optimizer_is_adam_with_coupled_wd_and_rmsprop_is_beta1_zero(name):
    from lrdynamics.engine.optimizers import build_optimizer

    rng = np.random.default_rng(0)
    w0 = rng.normal(size=7)
    grads = [rng.normal(size=7) for _ in range(6)]
    beta1 = 0.9 if name == "adam" else 0.0
    opt_spec = {"name": name, "beta1": beta1, "beta2": 0.99, "eps": 1e-3, "svag": 1, "momentum": 0.0}
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = build_optimizer([p], opt_spec, 0.05)
    for g in grads:
        opt.param_groups[0]["weight_decay"] = 0.1
        p.grad = torch.tensor(g)
        opt.step()
    expected = _reference_adam(w0, grads, 0.05, beta1, 0.99, 1e-3, 0.1)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-12)
    # the bias correction matters: without it the first step would be (1-beta2)^-1/2 smaller
    assert not np.allclose(expected, w0 - 0.05 * np.sign(grads[0]) * 6, rtol=1e-3)


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_adaptive_svag_with_l_1_is_exactly_the_optimizer(synth_data_dir, name):
    """Training with svag=1 equals a hand-written torch.optim.Adam loop on the same batches."""
    from lrdynamics.engine.trainer import Trainer

    optimizer = {**ADAM, "name": name, "svag": 1}
    run = adaptive_runs(synth_data_dir, optimizer)["run"]
    engine = Trainer(run, threads=1)
    assert engine.timeline.updates_per_step == 1 and engine.timeline.n_updates == engine.timeline.n_steps
    engine.fit()
    ref = Trainer(run, threads=1)  # same init, same data stream
    params = [p for p in ref.model.parameters() if p.requires_grad]
    opt = run["optimizer"]
    adam = torch.optim.Adam(params, lr=1e-3, betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"], weight_decay=1e-4)
    ref.model.train()
    for _ in range(ref.timeline.n_updates):
        x, y = ref.streams[0].next()
        adam.zero_grad(set_to_none=True)
        F.cross_entropy(ref.model(x), y).backward()
        adam.step()
    for (k, a), b in zip(engine.model.state_dict().items(), ref.model.state_dict().values()):
        if a.is_floating_point() and "running" not in k:  # evaluation recalibrates nothing here
            assert torch.equal(a, b), k


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_adaptive_svag_run_takes_l_squared_updates_with_scaled_hyperparameters(synth_data_dir, tmp_path, name):
    from lrdynamics.engine.job import train
    from lrdynamics.engine.runfile import check_contract
    from lrdynamics.engine.trainer import Trainer

    optimizer = {**ADAM, "name": name}
    runs = adaptive_runs(
        synth_data_dir,
        optimizer,
        schedule={"name": "step", "lr": 1e-3, "wd": 1e-4, "milestones": [1]},
        grid={"optimizer.svag": [1, 2]},
    )
    engine = Trainer(runs["svag=2"], threads=1)
    # 600 images, B=50: 12 effective steps per epoch, 2 epochs; l=2 makes 4x the updates
    assert engine.timeline.updates_per_step == 4 and engine.timeline.n_updates == 4 * 24
    group = engine.optimizer.param_groups[0]
    beta1 = 0.9 if name == "adam" else 0.0
    assert group["betas"][0] == pytest.approx(1 - (1 - beta1) / 4 if beta1 else 0.0)
    assert group["betas"][1] == pytest.approx(1 - 0.01 / 4)
    assert group["eps"] == pytest.approx(2e-8)
    lr = engine.schedule.lr
    assert np.all(lr[:48] == 1e-3 / 2) and np.all(lr[48:] == pytest.approx(1e-4 / 2))  # milestone at 4 x 12 updates
    plain = train(runs["svag=1"], tmp_path / "l1.nc", threads=1)
    svag = train(runs["svag=2"], tmp_path / "l2.nc", threads=1)
    assert check_contract(svag) == []
    assert list(svag.step.values) == list(plain.step.values)
    assert list(svag.updates_done.values) == [4 * s for s in plain.step.values]
    assert svag.attrs["total_updates"] == 96 and svag.attrs["updates_per_step"] == 4
    assert svag.attrs["status"] == "completed" and np.isfinite(svag.test_accuracy).all()


def test_svag_loss_of_adaptive_svag_uses_the_l_squared_coefficients(synth_data_dir, monkeypatch):
    import lrdynamics.engine.trainer as trainer_module

    seen = []
    real = trainer_module.svag_loss
    monkeypatch.setattr(trainer_module, "svag_loss", lambda *a: seen.append(a[-1]) or real(*a))
    runs = adaptive_runs(synth_data_dir, {**ADAM, "svag": 3})
    engine = trainer_module.Trainer(runs["run"], threads=1)
    engine.start_updates()
    engine.update(0)
    assert seen == [9]  # c1,2 = (1 +- sqrt(2*9 - 1))/2


# --- warm-up ---------------------------------------------------------------------------


def test_exponential_warmup_schedule():
    spec = schedule_spec({"name": "step", "lr": 0.1, "wd": 0.0, "milestones": [8], "factor": 0.1, "unit": "epoch",
                          "warmup": 2, "warmup_start": 1e-3})  # fmt: skip
    s = build_schedule(spec, 10, 100)
    t = np.arange(20)
    np.testing.assert_allclose(s.lr[:20], 0.1 * 1e-3 ** (1 - t / 20), rtol=1e-12)
    assert s.lr[0] == pytest.approx(1e-4) and np.all(s.lr[20:80] == 0.1) and np.all(s.lr[80:] == pytest.approx(0.01))
    # under adaptive SVAG (l = 2: 4 updates per effective step) the warm-up stretches with the run
    sv = build_schedule(spec, 10, 100, svag=2, updates_per_step=4)
    np.testing.assert_allclose(sv.lr[::4], s.lr / 2, rtol=1e-12)
    assert len(sv) == 400


# --- bad configs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "optimizer,schedule,grid,fragments",
    [
        ({"name": "adam", "momentum": 0.9}, {}, {}, ["optimizer.momentum", "adam takes no momentum"]),
        ({"name": "adam", "momentum": 0.0}, {"name": "exponential", "lr": 0.1, "wd": 1e-3}, {}, ["schedule", "SGD"]),
        ({"name": "adam", "momentum": 0.0}, {"wd_as_exp_lr": True}, {}, ["wd_as_exp_lr"]),
        (
            {"name": "adam", "momentum": 0.0},
            {"scaling_rule": "sqrt", "reference_batch_size": 4},
            {"training.batch_size": [50]},
            ["schedule.scaling_rule", "beta", "outside [0, 1)"],
        ),
        (
            {"name": "adam", "momentum": 0.0},
            {"name": "step", "scaling_rule": "sqrt", "milestones": [10], "unit": "step"},
            {},
            ["schedule.unit", "epochs"],
        ),
        ({"name": "adam", "momentum": 0.0}, {"warmup": 2}, {}, ["schedule.warmup", "whole run"]),
        (
            {"name": "sgd", "momentum": 0.0},
            {"name": "exponential", "lr": 0.1, "wd": 1e-3, "warmup": 1},
            {},
            ["warmup", "exponential"],
        ),
    ],
    ids=[
        "adam momentum",
        "adam exp lr",
        "adam wd_as_exp_lr",
        "beta past 0",
        "scaled step units",
        "warmup too long",
        "warmup exp lr",
    ],  # fmt: skip
)
def test_bad_adaptive_configs_are_clear_errors(synth_data_dir, optimizer, schedule, grid, fragments):
    config = tiny_config(
        synth_data_dir, optimizer=optimizer, schedule={"name": "constant", "lr": 1e-3, **schedule}, grid=grid
    )
    with pytest.raises(ConfigError) as err:
        resolve(config)
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))


def test_adaptive_figures_check_their_experiments(synth_data_dir):
    config = tiny_config(synth_data_dir, optimizer={"momentum": 0.0}, grid={"optimizer.svag": [1, 2]})
    config["figures"] = {"adaptive_svag": {"experiment": "tiny"}}
    with pytest.raises(ConfigError, match="adam or rmsprop"):
        resolve(config)
    config["experiments"]["tiny"]["optimizer"] = {"name": "adam", "momentum": 0.0}
    resolve(config)
    config["figures"] = {"adaptive_sqrt_scaling": {"experiment": "tiny"}}
    with pytest.raises(ConfigError, match="training.batch_size and schedule.scaling_rule"):
        resolve(config)


# --- the analysis ------------------------------------------------------------------------


def test_adaptive_analysis_of_real_runs(synth_data_dir, tmp_path):
    from lrdynamics.engine.job import train
    from lrdynamics.studies.adaptive_sde.analysis import adaptive_analysis

    scaling = adaptive_runs(
        synth_data_dir,
        schedule={"name": "constant", "lr": 1e-3, "reference_batch_size": 25},
        gradient_noise={"every": 1, "batches": 4},
        grid={"schedule.scaling_rule": ["none", "sqrt"], "training.batch_size": [25, 100]},
    )
    svag = adaptive_runs(synth_data_dir, {**ADAM, "name": "rmsprop"}, grid={"optimizer.svag": [1, 2]})
    scaling_ds = {name: train(run, tmp_path / f"s-{name}.nc", threads=1) for name, run in scaling.items()}
    svag_ds = [train(run, tmp_path / f"v-{name}.nc", threads=1) for name, run in svag.items()]
    out = adaptive_analysis(list(scaling_ds.values()), svag_ds)
    assert dict(out.final_test_accuracy.sizes) == {"optimizer": 2, "scaling_rule": 2, "kappa": 2}  # outer join
    assert list(out.kappa.values) == [1.0, 4.0] and list(out.optimizer.values) == ["adam", "rmsprop"]
    for (rule, batch), ds in zip([(r, b) for r in ("none", "sqrt") for b in (25, 100)], scaling_ds.values()):
        cell = out.sel(optimizer="adam", scaling_rule=rule, kappa=batch / 25)
        assert float(cell.final_test_accuracy) == float(ds.test_accuracy.isel(step=-1).squeeze())
        snr = (ds.gradient_signal / ds.batch_gradient_noise).squeeze().values
        np.testing.assert_allclose(cell.signal_to_noise.dropna("noise_evaluation").values, snr)
        assert float(cell.learning_rate) == pytest.approx(1e-3 * (2.0 if rule == "sqrt" and batch == 100 else 1.0))
    finals = out.final_test_accuracy.sel(optimizer="adam")
    np.testing.assert_allclose(
        out.final_test_accuracy_spread.sel(optimizer="adam"), finals.max("kappa") - finals.min("kappa")
    )
    assert (out.test_accuracy_curve_distance.sel(optimizer="adam", kappa=1.0) == 0).all()
    # the SVAG part: l = 1, 2 of RMSprop on the shared effective-step axis
    assert list(out.l.values) == [1, 2]
    assert out.svag_test_accuracy.sel(optimizer="rmsprop").notnull().all()
    assert float(out.svag_test_accuracy_distance.sel(optimizer="rmsprop", l=2)) == 0.0
    # a diverged run keeps its status: NaN final accuracy, named in the attributes
    bad = scaling_ds["scaling_rule=sqrt_batch_size=100"].copy()
    bad.attrs.update(status="diverged", diverged_step=3)
    out = adaptive_analysis([*list(scaling_ds.values())[:3], bad], [])
    assert np.isnan(float(out.final_test_accuracy.sel(optimizer="adam", scaling_rule="sqrt", kappa=4.0)))
    assert "scaling_rule=sqrt_batch_size=100" in out.attrs["scaling_diverged_runs"]


def _noise_run(batch, rule, estimator, seed=0):
    """A synthetic run file of the square-root scaling analysis with noise measurements."""
    import json

    import xarray as xr

    rng = np.random.default_rng(seed + batch)
    config = {"optimizer": {"name": "adam"}, "training": {"batch_size": batch},
              "schedule": {"scaling_rule": rule, "reference_batch_size": 25, "lr": 1e-3},
              "gradient_noise": {"estimator": estimator}}  # fmt: skip
    n = 3
    data = {name: ("step", rng.uniform(0.1, 1, 2)) for name in ("test_accuracy", "test_loss", "train_loss")}
    data |= {name: ("noise_step", rng.uniform(0.5, 2, n)) for name in
             ("gradient_signal", "batch_gradient_noise", "gradient_noise", "example_gradient_norm")}  # fmt: skip
    ds = xr.Dataset(data, coords={"step": [0, 1], "epoch": ("step", [0.0, 1.0]), "noise_step": np.arange(n),
                                  "noise_epoch": ("noise_step", np.arange(n) / 2)})  # fmt: skip
    ds.attrs.update(status="completed", run=f"{rule}-{batch}-{estimator}", config_json=json.dumps(config))
    return ds


def test_sqrt_scaling_snr_follows_the_noise_estimator():
    """minibatch: SNR = G / tr Sigma_B and the trace tr Sigma_B (today's); per_example: the
    adaptive-SDE authors' (mean_i |g_i|)^2 / tr Sigma_1 and tr Sigma_1, said in the attributes;
    a per-example run without the mean norm, or both estimators at once, are errors."""
    from lrdynamics.studies.adaptive_sde.analysis import sqrt_scaling_analysis

    for estimator in ("minibatch", "per_example"):
        runs = [_noise_run(b, r, estimator) for r in ("none", "sqrt") for b in (25, 100)]
        out = sqrt_scaling_analysis(runs)
        assert out.attrs["gradient_noise_estimator"] == estimator
        for ds in runs:
            run = ds.attrs["run"].split("-")
            cell = out.sel(optimizer="adam", scaling_rule=run[0], kappa=int(run[1]) / 25)
            if estimator == "minibatch":
                trace, snr = ds.batch_gradient_noise, ds.gradient_signal / ds.batch_gradient_noise
            else:
                trace, snr = ds.gradient_noise, ds.example_gradient_norm**2 / ds.gradient_noise
            np.testing.assert_allclose(cell.gradient_noise_trace.values, trace.values)
            np.testing.assert_allclose(cell.signal_to_noise.values, snr.values)
        text = out.signal_to_noise.attrs["long_name"]
        assert ("(mean_i |g_i|)^2 / tr Sigma_1" in text) == (estimator == "per_example")
    bare = _noise_run(25, "none", "per_example").drop_vars("example_gradient_norm")
    with pytest.raises(ValueError, match="example_gradient_norm"):
        sqrt_scaling_analysis([bare, _noise_run(100, "none", "per_example")])
    with pytest.raises(ValueError, match="mix"):
        sqrt_scaling_analysis([_noise_run(25, "none", "minibatch"), _noise_run(100, "none", "per_example")])


@pytest.mark.parametrize("ensemble", [1, 2])
def test_per_example_noise_is_written_to_the_run_file(synth_data_dir, tmp_path, ensemble):
    """gradient_noise.estimator per_example through the trainer (single run and ensemble):
    the file has the mean single-example gradient norm beside tr Sigma_1, and the contract holds."""
    import xarray as xr

    from lrdynamics.engine.job import train
    from lrdynamics.engine.runfile import check_contract

    run = next(iter(resolve(tiny_config(
        synth_data_dir,
        model={"name": "cnn4", "width": 4, "norm": "gn", "groups": 2},
        optimizer={"name": "adam", "momentum": 0.0},
        training={"epochs": 1, "ensemble": ensemble},
        gradient_noise={"every": 0.5, "estimator": "per_example", "samples": 6},
    ))["runs"]["tiny"].values()))  # fmt: skip
    out = tmp_path / "run.nc"
    train(run, out, threads=1)
    with xr.open_dataset(out) as ds:
        assert check_contract(ds) == []
        norms = ds.example_gradient_norm.values
        assert np.isfinite(norms).all() and (norms > 0).all()
        # mean |g_i| >= |mean g_i| and (mean |g_i|)^2 >= G (Jensen): the SNR numerator is not G
        assert (norms**2 >= ds.gradient_signal.values - 1e-9).all()


def test_per_example_noise_with_batchnorm1d_is_a_config_error(synth_data_dir):
    with pytest.raises(ConfigError, match="per_example"):
        resolve(tiny_config(synth_data_dir, model={"name": "mlp", "norm": "bn"},
                            gradient_noise={"every": 1, "estimator": "per_example"}))  # fmt: skip
