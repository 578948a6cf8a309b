"""The exponential-LR equivalence (Li & Arora 2020) through the real training engine.

SGD with momentum and WD on a scale-invariant net and its exact exponential counterpart
(no WD) must follow the same function-space trajectory: the weights differ only by the
scalar c_t of the schedule, the logits not at all (to float precision).
"""

import numpy as np
import pytest
import torch

from conftest import resolve, tiny_config
from lrdynamics.engine.trainer import Trainer

# 600 synthetic images, B=50: 12 steps per epoch; 200/12 epochs = 200 steps.
EPOCHS_200_STEPS = 200 / 12


def run_of(data_dir, schedule, **training):
    config = tiny_config(
        data_dir,
        schedule=schedule,
        training={"epochs": EPOCHS_200_STEPS, "dtype": "float64", **training},
        evaluation={"every": 50, "unit": "step", "logit_samples": 100, "bn_recalibration_samples": 300},
    )
    return resolve(config)["runs"]["tiny"]["run"]


def fit(run) -> Trainer:
    training = Trainer(run, threads=1)
    status = training.fit()
    assert status["status"] == "completed" and training.timeline.n_steps == 200
    return training


def true_weights(training: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in training.layers.values()]) * 2.0**training.scale.log2


def logits(training: Trainer) -> np.ndarray:
    return np.stack(training.recorder.rows["test_logits"])


def relative(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


@pytest.mark.parametrize(
    "schedule,tolerance",
    [
        ({"name": "constant", "lr": 0.1, "wd": 5.0e-4}, 1e-10),  # the theorem
        ({"name": "step", "lr": 0.1, "wd": 5.0e-4, "milestones": [100], "unit": "step"}, 1e-6),  # TEXP
        ({"name": "cosine", "lr": 0.1, "wd": 5.0e-4}, 1e-6),  # exponential cosine
        ({"name": "step", "lr": 0.1, "wd": 5.0e-4, "milestones": [100], "unit": "step", "decay_target": "wd"}, 1e-6),
    ],
    ids=["constant-exp", "step-texp", "cosine-expcosine", "wd-decay-exp"],
)
def test_counterpart_is_the_same_trajectory_in_float64(synth_data_dir, schedule, tolerance):
    reference = fit(run_of(synth_data_dir, schedule))
    counterpart = fit(run_of(synth_data_dir, {**schedule, "wd_as_exp_lr": True}, rescale_log2=None))
    c_T = counterpart.schedule.scale[-1]
    # weights: w~_T = c_T w_T
    err_w = relative(true_weights(counterpart) / c_T, true_weights(reference))
    assert err_w <= tolerance, err_w
    # function space: the same logits (BN statistics re-estimated: they depend on the weights only)
    err_f = relative(logits(counterpart), logits(reference))
    assert err_f <= tolerance, err_f
    # WD matters here: without it the run is elsewhere, so the test could fail
    no_wd = fit(run_of(synth_data_dir, {**schedule, "wd": 0.0}))
    assert relative(logits(no_wd), logits(reference)) > 1e3 * tolerance


def test_zero_momentum_buffer_breaks_exactness(synth_data_dir):
    """docs/science.md section 2: with a zero buffer the runs differ (the buffer init is what makes it exact)."""
    schedule = {"name": "constant", "lr": 0.1, "wd": 5.0e-4}
    reference = fit(run_of(synth_data_dir, schedule))
    plain = fit(run_of(synth_data_dir, {**schedule, "name": "exponential"}))
    exact = fit(run_of(synth_data_dir, {**schedule, "wd_as_exp_lr": True}))
    assert relative(logits(exact), logits(reference)) < 1e-10
    assert relative(logits(plain), logits(reference)) > 1e-6


def test_rescaling_is_exact_in_float32(synth_data_dir):
    """Dividing weights by powers of two (LR, WD, buffer to match) changes nothing."""
    schedule = {"name": "constant", "lr": 0.4, "wd": 5.0e-3, "wd_as_exp_lr": True}
    plain = fit(run_of(synth_data_dir, schedule, dtype="float32", rescale_log2=None))
    rescaled = fit(run_of(synth_data_dir, schedule, dtype="float32", rescale_log2=1))
    assert rescaled.scale.log2 >= 2  # it did rescale, more than once
    np.testing.assert_array_equal(logits(rescaled), logits(plain))
    np.testing.assert_allclose(
        rescaled.recorder.rows["total_weight_norm"], plain.recorder.rows["total_weight_norm"], rtol=1e-6
    )


def test_one_ulp_perturbation_is_tiny_and_real(synth_data_dir):
    schedule = {"name": "constant", "lr": 0.1, "wd": 5.0e-4}
    a = Trainer(run_of(synth_data_dir, schedule, dtype="float32"), threads=1)
    b = Trainer(run_of(synth_data_dir, schedule, dtype="float32", perturb_init=True), threads=1)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        diff = (pb - pa).abs()
        assert (diff > 0).all() and (diff <= torch.finfo(torch.float32).eps * pa.abs().clamp_min(1e-30)).all()
