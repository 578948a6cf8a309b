"""Gradient signal and noise, the critical batch size, and the linear-scaling-rule test.

With ``num`` independent minibatch gradients g_1..g_num of batch size B (papers.md
section 3, after the SVAG authors' code):

    total = mean_i |g_i|^2                         E = |grad L|^2 + tr Sigma_B
    G     = (num |mean_i g_i|^2 - total)/(num - 1) unbiased |grad L|^2 (the signal)
    N_B   = total - G                              unbiased tr Sigma_B (the paper code's N)

Sigma_B is the covariance of a minibatch gradient: a uniform random B-subset of n
examples has Sigma_B = (n - B)/(B (n - 1)) Sigma_1, so the per-example noise is
``tr Sigma_1 = N_B * B (n - 1)/(n - B)``, a quantity that does not depend on B. The
linear scaling rule (B -> kB with LR -> kLR) keeps SGD near its SDE only while the
noise dominates; it is predicted to break near ``B* = (C^2 - 1) tr Sigma_1 / G``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr

from lrdynamics.models import kept_normalization_statistics
from lrdynamics.record import drop_hyperparameter_dims
from lrdynamics.svag import SVAG_REFERENCE


def noise_batches(batch_size: int, batches: int | None) -> int:
    """Minibatches per measurement: as configured, else the paper's max(200, 12800/B)."""
    return batches if batches is not None else max(200, math.ceil(12800 / batch_size))


def signal_and_noise(gradients) -> tuple[float, float]:
    """(G, N_B) from an iterable of flattened minibatch gradients (float64 sums)."""
    total, mean, num = 0.0, None, 0
    for g in gradients:
        g = g.double()
        total += float(g @ g)
        mean = g.clone() if mean is None else mean.add_(g)
        num += 1
    if num < 2:
        raise ValueError("the unbiased estimator needs at least two minibatch gradients")
    total /= num
    mean /= num
    signal = (num * float(mean @ mean) - total) / (num - 1)
    return signal, total - signal


def per_example_noise(batch_noise: float, batch_size: int, n_train: int) -> float:
    """tr Sigma_1 from tr Sigma_B, for B-subsets drawn without replacement from n examples."""
    if batch_size >= n_train:
        return math.nan  # the full batch has no sampling noise to measure
    return batch_noise * batch_size * (n_train - 1) / (n_train - batch_size)


def critical_batch_size(noise: float, signal: float, c: float = math.sqrt(2)) -> float:
    """B* = (C^2 - 1) tr Sigma_1 / G (inf when the estimated signal is not positive)."""
    return (c * c - 1) * noise / signal if signal > 0 else math.inf


def minibatch_gradients(model, loss_fn, batches, params):
    """Flattened gradient of ``loss_fn(model(x), y)`` for each (x, y), in train mode."""
    for x, y in batches:
        grads = torch.autograd.grad(loss_fn(model(x), y), params)
        yield torch.cat([g.flatten() for g in grads])


def measure_signal_and_noise(model, loss_fn, batches, params) -> tuple[float, float]:
    """(G, N_B) of ``model`` at its current weights over the given minibatches.

    Train mode (batch statistics, as SGD sees the loss); batch-norm running statistics
    are restored afterwards, so a measurement leaves the model exactly as it was.
    """
    with kept_normalization_statistics(model):
        model.train()
        return signal_and_noise(minibatch_gradients(model, loss_fn, batches, params))


# --- analysis: the linear scaling rule --------------------------------------------------


def lsr_analysis(experiments: dict[str, list[xr.Dataset]], late_fraction: float = 0.5) -> xr.Dataset:
    """Per experiment (one net, a grid over batch sizes under LSR) and batch size: final
    test accuracy, and G, N = tr Sigma_1 and B* over training. The B* predicted for the net
    is the median over batch sizes of each run's late-training median (the paper averages
    late epochs; medians because B* is infinite where the estimate of G is not positive).
    """
    parts = []
    for name, runs in experiments.items():
        rows = []
        for ds in runs:
            if "gradient_signal" not in ds:
                raise ValueError(
                    f"run {ds.attrs['run']} of experiment {name} has no gradient noise measurement "
                    "(set gradient_noise.every)"
                )
            ds1 = drop_hyperparameter_dims(ds)
            epoch = ds1.noise_epoch.values
            noise_vars = ds1[["gradient_signal", "gradient_noise", "critical_batch_size"]]
            noise_vars = noise_vars.drop_vars("noise_epoch").assign_coords(noise_step=epoch)
            noise_vars = noise_vars.rename(noise_step="noise_epoch")
            final = ds1.test_accuracy.isel(step=-1) if ds.attrs["status"] == "completed" else math.nan
            rows.append(
                noise_vars.assign(
                    final_test_accuracy=float(final),
                    diverged=ds.attrs["status"] != "completed",
                    learning_rate=float(ds.attrs["lr0"]),
                ).expand_dims(batch_size=[int(ds.attrs["batch_size"])])
            )
        rows.sort(key=lambda r: int(r.batch_size[0]))
        exp = xr.concat(rows, dim="batch_size", join="outer", data_vars="all", coords="different", compat="equals")
        # late training; B* is inf where the estimate of G is not positive: medians, not means
        late = exp.noise_epoch >= float(exp.noise_epoch.max()) * (1 - late_fraction)
        late_median = exp.critical_batch_size.where(late).median("noise_epoch")
        exp["late_critical_batch_size"] = late_median
        exp["predicted_critical_batch_size"] = late_median.median("batch_size")
        parts.append(exp.expand_dims(experiment=[name]))
    out = xr.concat(parts, dim="experiment", join="outer", data_vars="all", coords="different", compat="equals")
    attrs = {
        "gradient_signal": ("G = |grad L|^2, unbiased estimate", "1"),
        "gradient_noise": ("N = tr Sigma_1, per-example gradient noise", "1"),
        "critical_batch_size": ("B* = (C^2-1) N/G", "1"),
        "final_test_accuracy": ("test accuracy at the end of training (NaN: diverged)", "1"),
        "diverged": ("the run's loss or weights became non-finite", "1"),
        "learning_rate": ("initial learning rate (LSR: proportional to the batch size)", "1"),
        "late_critical_batch_size": (f"median B* over the last {late_fraction:.0%} of training", "1"),
        "predicted_critical_batch_size": ("median over batch sizes of late_critical_batch_size", "1"),
    }
    for k, (long_name, units) in attrs.items():
        out[k].attrs.update(long_name=long_name, units=units)
    out["diverged"] = out.diverged.astype(np.int8)
    out["noise_epoch"].attrs.update(long_name="epochs at the noise measurement", units="1")
    out.attrs.update(
        title="Linear scaling rule: accuracy vs batch size, gradient signal and noise",
        references=SVAG_REFERENCE,
    )
    return out
