"""The explr_equivalence analysis and the figures of the exponential-LR experiments."""

import numpy as np
import pytest

from conftest import resolve, tiny_config
from lrdynamics.config import ConfigError
from lrdynamics.engine.job import train
from lrdynamics.engine.runfile import check_contract
from lrdynamics.figures.common import FigureInputs
from lrdynamics.figures.exponential_lr import plot_explr_equivalence, plot_explr_weight_norm, plot_texp_vs_step
from lrdynamics.studies.exponential_lr.equivalence import explr_equivalence

GRID = {"schedule.wd_as_exp_lr": [False, True], "training.perturb_init": [False, True]}
EVAL = {"every": 6, "unit": "step", "logit_samples": 50, "bn_recalibration_samples": 300}


def equivalence_runs(data_dir, tmp_path, schedule, name="tiny"):
    config = tiny_config(data_dir, schedule=schedule, grid=GRID, evaluation=EVAL)
    runs = resolve(config)["runs"]["tiny"]
    out = []
    for run_name, run in runs.items():
        run["experiment"] = name
        out.append(train(run, tmp_path / f"{name}-{run_name}.nc", threads=1))
    return out


@pytest.fixture(scope="module")
def step_runs(synth_data_dir, tmp_path_factory):
    schedule = {"name": "step", "lr": 0.1, "wd": 5.0e-3, "milestones": [1], "factor": 0.1}
    return equivalence_runs(synth_data_dir, tmp_path_factory.mktemp("eq"), schedule, "explr_step")


def test_analysis_of_an_exact_pair(step_runs, tmp_path):
    analysis = explr_equivalence(step_runs)
    assert check_contract(analysis.assign_attrs(config_json="{}", status="completed")) == []
    assert list(analysis.pair.values) == ["explr_step: step vs TEXP"]
    pair = analysis.isel(pair=0)
    assert pair.max_abs_logit_diff.sel(step=0) == 0  # same initial weights
    assert pair.chaos_floor_logit_diff.sel(step=0) > 0  # one ulp apart
    assert float(pair.max_abs_logit_diff.max()) < 1e-3  # float32, 24 steps: no chaos yet
    assert bool(pair.within_chaos_criterion)
    np.testing.assert_allclose(pair.test_accuracy_diff, 0, atol=0.01)
    plot_explr_equivalence(FigureInputs(analyses={"explr_equivalence": analysis}), tmp_path / "eq.png")
    plot_texp_vs_step(FigureInputs(step_runs, {"explr_step": ""}), tmp_path / "cmp.png")
    plot_explr_weight_norm(FigureInputs(step_runs, {"explr_step": ""}), tmp_path / "norm.png")
    assert all((tmp_path / f).stat().st_size > 20_000 for f in ("eq.png", "cmp.png", "norm.png"))


def test_the_criterion_flags_a_pair_that_drifted_apart(synth_data_dir, tmp_path):
    runs = equivalence_runs(synth_data_dir, tmp_path, {"name": "constant", "lr": 0.1, "wd": 5.0e-3})
    assert bool(explr_equivalence(runs).within_chaos_criterion.item())
    for ds in runs:  # a counterpart whose logits are off by 50%: not the same function
        if '"wd_as_exp_lr": true' in ds.attrs["config_json"]:
            ds["test_logits"] = ds["test_logits"] * 1.5
    analysis = explr_equivalence(runs)
    assert not bool(analysis.within_chaos_criterion.item())


def test_missing_members_are_named(step_runs):
    with pytest.raises(ValueError, match="wd_as_exp_lr, perturb_init"):
        explr_equivalence(step_runs[:2])


def test_equivalence_figure_requires_the_grid_and_logits(tmp_path):
    config = tiny_config(tmp_path, grid={"schedule.wd_as_exp_lr": [False, True]}, evaluation=EVAL)
    config["figures"] = {"explr_equivalence": {"experiments": ["tiny"]}}
    with pytest.raises(ConfigError, match="training.perturb_init: \\[false, true\\] is missing"):
        resolve(config)
    config["experiments"]["tiny"]["grid"] = GRID
    config["experiments"]["tiny"]["evaluation"] = {"logit_samples": 0}
    with pytest.raises(ConfigError, match="logit_samples must be > 0"):
        resolve(config)
    config["figures"] = {"texp_vs_step": {"experiments": ["tiny", "nope"]}}
    with pytest.raises(ConfigError, match="figures.texp_vs_step.experiments\\[1\\]"):
        resolve(config)
