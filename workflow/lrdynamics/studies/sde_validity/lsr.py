"""The linear scaling rule test (docs/science.md section 4): ``results/analysis/lsr.nc``.

Per net (an experiment: a grid over the batch size under the linear rule) and batch
size: the final test accuracy, and the gradient signal G, noise N = tr Sigma_1 and the
critical batch size B* measured during training (``engine.gradient_noise``).

The window of the B* prediction: by default the last ``late_fraction`` of training;
``noise_window = [start, end]`` takes the measurements with start <= epoch < end instead
(the paper averages G and N over epochs 200-250, the last 50 before its LR decay), and then
also records the window means of G and N and the B* of those means, the paper's estimate.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import drop_hyperparameter_dims, file_attributes, runs_by_experiment
from lrdynamics.studies.sde_validity import REFERENCE


def window_text(late_fraction: float, noise_window) -> str:
    """The window of the B* prediction, in words (attributes and summary)."""
    if noise_window is None:
        return f"the last {late_fraction:.0%} of training (noise_epoch >= {1 - late_fraction:g} x the last one)"
    start, end = noise_window
    return f"the noise measurements with {start:g} <= noise_epoch < {end:g}"


def in_window(epoch: xr.DataArray, late_fraction: float, noise_window) -> xr.DataArray:
    """Which noise measurements (``epoch``: their epochs) fall in the window."""
    if noise_window is None:
        return epoch >= float(epoch.max()) * (1 - late_fraction)
    start, end = (float(v) for v in noise_window)
    return (epoch >= start) & (epoch < end)


def _check_window(exp: xr.Dataset, inside: xr.DataArray, name: str, statuses: dict, noise_window) -> None:
    """A run with no measurement in ``noise_window``: an error when it completed (the window
    misses its measurements: a config mistake), NaN with a warning when it diverged (its
    measurements stop where it did)."""
    start, end = noise_window
    counts = (exp.gradient_signal.notnull() & inside).sum("noise_epoch")
    for b, count in zip(exp.batch_size.values, counts.values):
        if count:
            continue
        epochs = exp.noise_epoch.values[exp.gradient_signal.sel(batch_size=b).notnull().values]
        where = f"{name}, batch size {b}: no noise measurement with {start:g} <= epoch < {end:g} (noise_window)"
        if statuses[int(b)] == "completed":
            raise ValueError(f"{where}; it measured at epochs {', '.join(f'{e:g}' for e in epochs) or 'none'}")
        warnings.warn(f"{where}; it diverged: its B* in the window is NaN", stacklevel=3)


def lsr_analysis(runs: list[xr.Dataset], *, late_fraction: float, noise_window=None) -> xr.Dataset:
    """Per experiment (one net, a grid over batch sizes under LSR) and batch size: final
    test accuracy, and G, N = tr Sigma_1 and B* over training. The B* predicted for the net
    is the median over batch sizes of each run's median in the window (the last
    ``late_fraction`` of training, or ``noise_window = [start, end]`` epochs: start <= epoch
    < end; medians because B* is infinite where the estimate of G is not positive). With a
    ``noise_window`` the window means of G and N and their B* = (C^2 - 1) mean N/mean G
    (the paper's estimate) are recorded too.
    """
    if noise_window is not None:
        start, end = (float(v) for v in noise_window)
        if not (len(noise_window) == 2 and 0 <= start < end):
            raise ValueError(f"noise_window must be [start, end] epochs with 0 <= start < end, not {noise_window}")
    parts = []
    for name, net_runs in runs_by_experiment(runs).items():
        rows, statuses, threshold = [], {}, {}
        for ds in net_runs:
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
            statuses[int(ds.attrs["batch_size"])] = ds.attrs["status"]
            if noise_window is not None:  # the C of the run's B*, for that of the window means
                c = json.loads(ds.attrs["config_json"])["gradient_noise"]["threshold_c"]
                threshold[int(ds.attrs["batch_size"])] = c
            rows.append(
                noise_vars.assign(
                    final_test_accuracy=float(final),
                    diverged=ds.attrs["status"] != "completed",
                    learning_rate=float(ds.attrs["lr0"]),
                ).expand_dims(batch_size=[int(ds.attrs["batch_size"])])
            )
        rows.sort(key=lambda r: int(r.batch_size[0]))
        exp = xr.concat(rows, dim="batch_size", join="outer", data_vars="all", coords="different", compat="equals")
        # the window; B* is inf where the estimate of G is not positive: medians, not means
        late = in_window(exp.noise_epoch, late_fraction, noise_window)
        if noise_window is not None:
            _check_window(exp, late, name, statuses, noise_window)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            late_median = exp.critical_batch_size.where(late).median("noise_epoch")
        exp["late_critical_batch_size"] = late_median
        exp["predicted_critical_batch_size"] = late_median.median("batch_size")
        if noise_window is not None:
            signal = exp.gradient_signal.where(late).mean("noise_epoch")
            noise = exp.gradient_noise.where(late).mean("noise_epoch")
            c2 = xr.DataArray([threshold[int(b)] ** 2 - 1 for b in exp.batch_size.values], dims="batch_size")
            exp["window_gradient_signal"] = signal
            exp["window_gradient_noise"] = noise
            bstar = xr.where(signal > 0, c2 * noise / signal, np.inf)
            exp["window_critical_batch_size"] = bstar.where(signal.notnull())
        parts.append(exp.expand_dims(experiment=[name]))
    out = xr.concat(parts, dim="experiment", join="outer", data_vars="all", coords="different", compat="equals")
    attrs = {
        "gradient_signal": ("G = |grad L|^2, unbiased estimate", "1"),
        "gradient_noise": ("N = tr Sigma_1, per-example gradient noise", "1"),
        "critical_batch_size": ("B* = (C^2-1) N/G", "1"),
        "final_test_accuracy": ("test accuracy at the end of training (NaN: diverged)", "1"),
        "diverged": ("the run's loss or weights became non-finite", "1"),
        "learning_rate": ("initial learning rate (LSR: proportional to the batch size)", "1"),
        "late_critical_batch_size": (f"median B* over {window_text(late_fraction, noise_window)}", "1"),
        "predicted_critical_batch_size": ("median over batch sizes of late_critical_batch_size", "1"),
        "window_gradient_signal": (f"mean G over {window_text(late_fraction, noise_window)}", "1"),
        "window_gradient_noise": (f"mean N over {window_text(late_fraction, noise_window)}", "1"),
        "window_critical_batch_size": (
            "B* = (C^2-1) window_gradient_noise/window_gradient_signal (inf: mean G not positive), the paper's",
            "1",
        ),
    }
    for k, (long_name, units) in attrs.items():
        if k in out:
            out[k].attrs.update(long_name=long_name, units=units)
    out["diverged"] = out.diverged.astype(np.int8)
    out["noise_epoch"].attrs.update(long_name="epochs at the noise measurement", units="1")
    out.attrs["noise_window"] = window_text(late_fraction, noise_window)
    out.attrs.update(
        file_attributes("Linear scaling rule: accuracy vs batch size, gradient signal and noise", REFERENCE, __name__)
    )
    return out


def summary(analysis: xr.Dataset) -> list[str]:
    """Each net's predicted B* and final test accuracy per batch size."""
    lines = []
    for name in analysis.experiment.values:
        exp = analysis.sel(experiment=name)
        lines.append(f"{name}: predicted critical batch size {float(exp.predicted_critical_batch_size):.1f}")
        lines += [
            f"{name}: B={b} final test accuracy {acc:.4f}"
            for b, acc in zip(exp.batch_size.values, exp.final_test_accuracy.values)
        ]
    return lines
