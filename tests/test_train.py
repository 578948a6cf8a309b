"""The training engine and the netCDF contract, on a small synthetic dataset."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

from conftest import resolve, tiny_config
from lrdynamics.engine.combine import combine_runs, experiment_dataset
from lrdynamics.engine.contract import VARIABLES
from lrdynamics.engine.job import train
from lrdynamics.engine.quantities import angular_update, intrinsic_lr
from lrdynamics.engine.runfile import check_contract, drop_hyperparameter_dims, open_runs, write_atomic
from lrdynamics.engine.trainer import cadence_steps


def runs_of(data_dir, **experiment):
    return resolve(tiny_config(data_dir, **experiment))["runs"]["tiny"]


def one_run(data_dir, **experiment):
    return next(iter(runs_of(data_dir, **experiment).values()))


@pytest.fixture(scope="module")
def baseline(synth_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "base.nc"
    run = one_run(synth_data_dir)
    train(run, out, threads=1)
    with xr.open_dataset(out) as ds:
        return run, out, ds.load()


def test_run_file_follows_the_contract(baseline):
    run, _, ds = baseline
    assert check_contract(ds) == []
    assert ds.attrs["status"] == "completed" and ds.attrs["diverged_step"] == -1
    assert set(VARIABLES) <= set(ds.data_vars)
    assert json.loads(ds.attrs["config_json"]) == json.loads(json.dumps(run))
    for attr in ("steps_per_second", "wall_time_s", "device"):
        assert attr in ds.attrs
    assert ds.attrs["steps_per_second"] > 0 and ds.attrs["device"] == "cpu"
    assert ds.attrs["lr0"] == 0.1 and ds.attrs["model"] == "mlp"
    assert ds.attrs["source"].startswith("lrdynamics ")


def test_steps_and_evaluation_points(baseline):
    run, _, ds = baseline
    # 600 images, B=50: 12 steps/epoch, 2 epochs, evaluated every half epoch
    assert ds.attrs["steps_per_epoch"] == 12 and ds.attrs["total_steps"] == 24
    assert list(ds.step.values) == [0, 6, 12, 18, 24]
    np.testing.assert_allclose(ds.epoch.values, [0, 0.5, 1, 1.5, 2])
    assert cadence_steps(5, "step", 12, 24) == [0, 5, 10, 15, 20, 24]


def test_training_learns_and_records_physics(baseline):
    run, _, ds = baseline
    acc = ds.test_accuracy.values
    assert acc[0] < 0.3 and acc[-1] > 0.9  # the synthetic classes are easy
    assert ds.train_loss.values[-1] < 0.5 * ds.train_loss.values[0]
    np.testing.assert_allclose(ds.intrinsic_lr, intrinsic_lr(0.1, 5e-4, 0.9))
    total = np.sqrt((ds.weight_norm**2).sum("layer"))
    np.testing.assert_allclose(total, ds.total_weight_norm, rtol=1e-12)
    np.testing.assert_allclose(ds.effective_lr, ds.learning_rate / ds.weight_norm**2, rtol=1e-12)
    assert np.isnan(ds.total_angular_update.values[0]) and np.isnan(ds.grad_norm.values[0])
    assert np.all(ds.total_angular_update.values[1:] > 0) and np.all(ds.total_angular_update.values[1:] < 1)


def test_same_seed_same_numbers_other_seed_other_numbers(synth_data_dir, tmp_path, baseline):
    run, _, ds = baseline
    train(run, tmp_path / "again.nc", threads=1)
    with xr.open_dataset(tmp_path / "again.nc") as again:
        for name in VARIABLES:
            np.testing.assert_array_equal(again[name].values, ds[name].values, err_msg=name)
    other = one_run(synth_data_dir, training={"seed": 7})
    train(other, tmp_path / "other.nc", threads=1)
    with xr.open_dataset(tmp_path / "other.nc") as o:
        assert not np.array_equal(o.total_weight_norm.values, ds.total_weight_norm.values)


def test_norm_grows_without_weight_decay(synth_data_dir, tmp_path):
    """Plain SGD on a scale-invariant net: grad is orthogonal to w, so |w|^2 grows by
    eta^2 |g|^2 every step (docs/science.md section 3)."""
    run = one_run(synth_data_dir, optimizer={"momentum": 0.0}, schedule={"wd": 0.0})
    ds = train(run, tmp_path / "nowd.nc", threads=1)
    norms = ds.total_weight_norm.values
    assert np.all(np.diff(norms) > 0)


def test_augmentation_and_step_decay_run(synth_data_dir, tmp_path):
    run = one_run(
        synth_data_dir,
        training={"crop_padding": 2, "flip": True},
        schedule={"name": "step", "milestones": [1], "factor": 0.1},
        model={"name": "cnn4", "width": 4},
    )
    ds = train(run, tmp_path / "aug.nc", threads=1)
    assert ds.attrs["status"] == "completed"
    np.testing.assert_allclose(ds.learning_rate.values.ravel(), [0.1, 0.1, 0.01, 0.01, 0.01])


def test_piecewise_schedule_is_what_the_run_applies(synth_data_dir, tmp_path):
    pieces = {"name": "piecewise", "milestones": [0.5, 1.5], "lr_factors": [1, 4, 0.1], "wd_factors": [1, 0, 2]}
    run = one_run(synth_data_dir, schedule=pieces, optimizer={"momentum": 0.0})
    ds = train(run, tmp_path / "piecewise.nc", threads=1)
    assert ds.attrs["status"] == "completed"
    # steps 0, 6, 12, 18, 24 (12 per epoch): pieces from updates 6 and 18 on
    np.testing.assert_allclose(ds.learning_rate.values.ravel(), [0.1, 0.4, 0.4, 0.01, 0.01], rtol=1e-12)
    np.testing.assert_allclose(ds.weight_decay.values.ravel(), [5e-4, 0.0, 0.0, 1e-3, 1e-3], rtol=1e-12)


def test_divergence_is_a_result_not_a_crash(synth_data_dir, tmp_path):
    run = one_run(synth_data_dir, model={"norm": "none"}, schedule={"lr": 1.0e6})
    ds = train(run, tmp_path / "div.nc", threads=1)
    assert ds.attrs["status"] == "diverged"
    assert 0 <= ds.attrs["diverged_step"] < 24
    with xr.open_dataset(tmp_path / "div.nc") as on_disk:
        assert check_contract(on_disk) == []


def test_grid_runs_combine_into_a_hypercube(synth_data_dir, tmp_path):
    runs = runs_of(synth_data_dir, grid={"schedule.wd": [0.0, 5.0e-4], "training.seed": [0, 1]}, training={"epochs": 1})
    paths = []
    for name, run in runs.items():
        paths.append(tmp_path / f"{name}.nc")
        train(run, paths[-1], threads=1)
    combined = combine_runs(open_runs(paths))
    assert dict(combined.sizes) == {"wd": 2, "seed": 2, "step": 3, "layer": 2}
    assert not np.isnan(combined.test_accuracy.values).any()
    assert combined.test_accuracy.sel(wd=5.0e-4, seed=1).shape == (3,)


def test_command_line_entry_point(synth_data_dir, tmp_path, baseline):
    run, _, ds = baseline
    cfg = tmp_path / "run.json"
    cfg.write_text(ds.attrs["config_json"])
    out = tmp_path / "cli.nc"
    proc = subprocess.run(
        [sys.executable, "-m", "lrdynamics.train", str(cfg), str(out), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "steps/s" in proc.stderr and "ETA" in proc.stderr  # progress in the log
    with xr.open_dataset(out) as cli:
        np.testing.assert_array_equal(cli.test_accuracy.values, ds.test_accuracy.values)


def test_angular_update_is_accurate_for_tiny_angles():
    a = torch.tensor([1.0, 0.0], dtype=torch.float32)
    for theta in (1e-6, 1e-3, 0.5, 3.0):
        b = torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64) * 7
        assert angular_update(a, b) == pytest.approx(theta, rel=1e-6)


def test_init_scale_moves_the_norm_not_the_function(synth_data_dir, tmp_path):
    base = one_run(
        synth_data_dir, training={"epochs": 0.5}, evaluation={"prediction_samples": 50, "every": 3, "unit": "step"}
    )
    scaled = one_run(
        synth_data_dir,
        training={"epochs": 0.5, "init_scale": 4.0},
        evaluation={"prediction_samples": 50, "every": 3, "unit": "step"},
    )
    a, b = train(base, tmp_path / "a.nc", threads=1), train(scaled, tmp_path / "b.nc", threads=1)
    assert float(b.total_weight_norm[..., 0]) == pytest.approx(4 * float(a.total_weight_norm[..., 0]))
    # same function at init (scale invariance), different dynamics afterwards (effective LR / 16)
    np.testing.assert_array_equal(a.test_predictions[..., 0, :], b.test_predictions[..., 0, :])
    assert a.test_predictions.dtype == np.int16 and a.test_predictions.sizes["sample"] == 50
    np.testing.assert_allclose(b.total_effective_lr[..., 0], a.total_effective_lr[..., 0] / 16)


def test_wd0_attribute_is_the_weight_decay_used(synth_data_dir, tmp_path):
    run = one_run(synth_data_dir, schedule={"lr": 0.2, "intrinsic_lr": 1.0e-3}, training={"epochs": 0.5})
    ds = train(run, tmp_path / "ilr.nc", threads=1)
    assert ds.attrs["wd0"] == pytest.approx(1.0e-3 * (1 - 0.9) / 0.2)
    np.testing.assert_allclose(ds.intrinsic_lr, 1.0e-3)


def test_experiment_dataset_holds_the_whole_grid_with_diverged_and_missing_runs(synth_data_dir, tmp_path):
    """results/<experiment>.nc: diverged curves padded with NaN, a grid point without a run
    NaN with status missing, epoch per run when the batch size varies."""
    runs = runs_of(
        synth_data_dir,
        grid={"schedule.lr": [0.1, 1.0e6], "training.batch_size": [25, 50]},
        model={"norm": "none"},
        training={"epochs": 1},
    )
    paths = []
    for name, run in runs.items():
        paths.append(tmp_path / f"{name}.nc")
        train(run, paths[-1], threads=1)
    datasets = open_runs(paths)
    ds = experiment_dataset(datasets)
    write_atomic(ds, tmp_path / "exp.nc")
    with xr.open_dataset(tmp_path / "exp.nc") as back:
        xr.testing.assert_equal(back, ds)
    assert dict(ds.status.sizes) == {"lr": 2, "batch_size": 2}
    assert set(ds.status.sel(lr=0.1).values) == {"completed"}
    assert set(ds.status.sel(lr=1.0e6).values) == {"diverged"}
    assert ds.diverged_step.sel(lr=0.1).isnull().all() and (ds.diverged_step.sel(lr=1.0e6) >= 0).all()
    for source in datasets:  # each run's numbers, where it has them, are the file's
        point = {d: source[d].item() for d in ("lr", "batch_size")}
        own = drop_hyperparameter_dims(source.test_accuracy)
        np.testing.assert_array_equal(ds.test_accuracy.sel(point).sel(step=own.step).values, own.values)
        assert ds.test_accuracy.sel(point).notnull().sum() == own.notnull().sum()  # NaN beyond
    assert {"batch_size", "step"} <= set(ds.epoch.dims)  # 25 vs 50 images per step: per run
    assert ds.attrs["runs_missing"] == 0 and "config_json" in ds and ds.run.sel(lr=0.1, batch_size=25) != ""

    holed = experiment_dataset(datasets[1:])
    missing = holed.status.values == "missing"
    assert missing.sum() == 1 and holed.attrs["runs_missing"] == 1
    gone = {d: datasets[0][d].item() for d in ("lr", "batch_size")}
    assert holed.status.sel(gone) == "missing" and holed.test_accuracy.sel(gone).isnull().all()

    other = datasets[0].copy()
    other.attrs["experiment"] = "another"
    with pytest.raises(ValueError, match="several experiments"):
        experiment_dataset([other, datasets[1]])


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizer_step_is_the_optimizers_step_without_dynamo(name):
    """engine.optimizers.optimizer_step: the same update, bit for bit, as optimizer.step()."""
    from lrdynamics.engine.optimizers import optimizer_step

    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 3))
        params = list(net.parameters())
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4) if name == "sgd" else torch.optim.Adam(
            params, lr=1e-2, weight_decay=5e-4)  # fmt: skip
        nets.append((net, opt))
    x, y = torch.randn(32, 8, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 3
    for _ in range(5):
        for i, (net, opt) in enumerate(nets):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step() if i == 0 else optimizer_step(opt)
    for a, b in zip(nets[0][0].parameters(), nets[1][0].parameters()):
        assert torch.equal(a, b)
    assert torch.is_grad_enabled()
