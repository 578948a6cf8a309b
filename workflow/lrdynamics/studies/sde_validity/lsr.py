"""The linear scaling rule test (docs/science.md section 4): ``results/analysis/lsr.nc``.

Per net (an experiment: a grid over the batch size under the linear rule) and batch
size: the final test accuracy, and the gradient signal G, noise N = tr Sigma_1 and the
critical batch size B* measured during training (``engine.gradient_noise``).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import drop_hyperparameter_dims, file_attributes, runs_by_experiment
from lrdynamics.studies.sde_validity import REFERENCE


def lsr_analysis(runs: list[xr.Dataset], *, late_fraction: float) -> xr.Dataset:
    """Per experiment (one net, a grid over batch sizes under LSR) and batch size: final
    test accuracy, and G, N = tr Sigma_1 and B* over training. The B* predicted for the net
    is the median over batch sizes of each run's late-training median (the paper averages
    late epochs; medians because B* is infinite where the estimate of G is not positive).
    """
    parts = []
    for name, net_runs in runs_by_experiment(runs).items():
        rows = []
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
