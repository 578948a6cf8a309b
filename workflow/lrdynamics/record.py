"""The netCDF data contract: one file per run, self-describing, written atomically.

Dimensions: ``step`` for curves, ``layer`` for per-layer quantities, and one length-1
dimension per grid hyperparameter (its value as coordinate), so that
``xr.combine_by_coords`` stacks the runs of an experiment into a hypercube. Every data
variable has ``long_name`` and ``units``. Global attributes: ``Conventions``, ``title``,
``source``, ``history``, ``references``, ``config_json``, ``status`` and the key
hyperparameters as scalars (design.md).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import numpy as np
import xarray as xr

import lrdynamics
from lrdynamics.adaptive import updates_per_step
from lrdynamics.config import format_value
from lrdynamics.files import atomic_path
from lrdynamics.schedules import base_wd

# name: (long_name, units, dims); every variable a run writes is declared here.
VARIABLES = {
    "train_loss": ("cross-entropy loss on the evaluation subset of the training set (eval mode)", "1", ("step",)),
    "train_accuracy": ("accuracy on the evaluation subset of the training set (eval mode)", "1", ("step",)),
    "test_loss": ("cross-entropy loss on the test set (eval mode)", "1", ("step",)),
    "test_accuracy": ("accuracy on the test set (eval mode)", "1", ("step",)),
    "minibatch_loss": ("mean training minibatch loss since the previous evaluation (train mode)", "1", ("step",)),
    "learning_rate": ("learning rate eta in force at this step", "1", ("step",)),
    "weight_decay": ("weight decay lambda in force at this step", "1", ("step",)),
    "intrinsic_lr": ("intrinsic learning rate eta*lambda/(1-momentum)", "1", ("step",)),
    "weight_norm": ("Frobenius norm of each weight layer", "1", ("step", "layer")),
    "total_weight_norm": ("norm of all weight layers together", "1", ("step",)),
    "effective_lr": ("effective learning rate eta/|w|^2 of each weight layer", "1", ("step", "layer")),
    "total_effective_lr": ("effective learning rate eta/|w|^2 of all weight layers together", "1", ("step",)),
    "angular_update": ("angle between each layer's weights before and after the last update", "rad", ("step", "layer")),
    "total_angular_update": (
        "angle between all weights before and after each update, mean over the updates since the previous evaluation",
        "rad",
        ("step",),
    ),
    "grad_norm": ("norm of the minibatch loss gradient of the last update (weight decay excluded)", "1", ("step",)),
}
# Written only when the run asks for them (evaluation.logit_samples > 0).
OPTIONAL_VARIABLES = {
    "test_logits": ("logits of the first test images (eval mode)", "1", ("step", "sample", "class")),
    "test_predictions": ("predicted label of the first test images (eval mode)", "1", ("step", "sample")),
}
# Written when the run measures gradient noise (gradient_noise.every), along noise_step.
NOISE_VARIABLES = {
    "gradient_signal": ("gradient signal G = |grad L|^2 (unbiased estimate over independent minibatches)", "1"),
    "batch_gradient_noise": ("minibatch gradient noise tr Sigma_B at the run's batch size B", "1"),
    "gradient_noise": ("per-example gradient noise N = tr Sigma_1 = tr Sigma_B * B(n-1)/(n-B)", "1"),
    "critical_batch_size": ("predicted critical batch size B* = (C^2-1) N/G of the linear scaling rule", "1"),
}
KEY_HYPERPARAMETERS = {
    "model": ("model", "name"),
    "norm": ("model", "norm"),
    "optimizer": ("optimizer", "name"),
    "momentum": ("optimizer", "momentum"),
    "svag": ("optimizer", "svag"),
    "schedule": ("schedule", "name"),
    "lr0": ("schedule", "lr"),
    "wd0": ("schedule", "wd"),
    "batch_size": ("training", "batch_size"),
    "epochs": ("training", "epochs"),
    "seed": ("training", "seed"),
}
STATUSES = ("completed", "diverged")
RUN_DIMS = ("step", "layer", "sample", "class", "noise_step", "sharpness_step", "eigenvalue")


def source_version() -> str:
    """Package version and git commit of the code that made a file."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(Path(lrdynamics.__file__).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return f"lrdynamics {lrdynamics.__version__} (git {commit})"


def coordinate_value(value):
    """A hyperparameter value usable as a netCDF coordinate (lists become text)."""
    if isinstance(value, (list, tuple, dict)):
        return format_value(value)
    return value


def run_dataset(
    records: dict, layers: list[str], run: dict, attrs: dict, noise_records: dict | None = None
) -> xr.Dataset:
    """Assemble a run's dataset from per-evaluation records (lists of equal length).

    ``records`` maps each name of VARIABLES (and ``step``, ``epoch``) to a list with one
    entry per evaluation point (per-layer ones: a list per point); ``step`` counts
    effective steps (updates / l under SVAG). ``noise_records`` maps ``noise_step`` and the
    names of NOISE_VARIABLES to a list per gradient-noise measurement (empty: none made).
    """
    steps = np.asarray(records["step"], dtype=np.int64)
    per_step = updates_per_step(run["optimizer"])
    data_vars = {}
    for name, (long_name, units, dims) in VARIABLES.items():
        values = np.asarray(records[name], dtype=np.float64).reshape(
            len(steps), *([len(layers)] if "layer" in dims else [])
        )
        data_vars[name] = xr.Variable(dims, values, {"long_name": long_name, "units": units})
    for name, (long_name, units, dims) in OPTIONAL_VARIABLES.items():
        if records.get(name):
            data_vars[name] = xr.Variable(dims, np.stack(records[name]), {"long_name": long_name, "units": units})
    if "test_predictions" in data_vars:  # labels: small integers, not float64
        data_vars["test_predictions"] = data_vars["test_predictions"].astype(np.int16)
    if noise_records and noise_records["noise_step"]:
        for name, (long_name, units) in NOISE_VARIABLES.items():
            values = np.asarray(noise_records[name], dtype=np.float64)
            data_vars[name] = xr.Variable(("noise_step",), values, {"long_name": long_name, "units": units})
    coords = {
        "step": (
            "step",
            steps,
            {
                "long_name": "effective steps: updates done / l (SVAG), / l^2 (adaptive SVAG), updates done",
                "units": "1",
            },
        ),
        "updates_done": ("step", steps * per_step, {"long_name": "optimizer updates done", "units": "1"}),
        "epoch": (
            "step",
            np.asarray(records["epoch"], dtype=np.float64),
            {"long_name": "passes over the training set", "units": "1"},
        ),
        "layer": ("layer", np.asarray(layers, dtype=str), {"long_name": "weight layer (parameter name)"}),
    }
    if "gradient_signal" in data_vars:
        noise_steps = np.asarray(noise_records["noise_step"], dtype=np.int64)
        coords["noise_step"] = ("noise_step", noise_steps, {"long_name": "effective steps done", "units": "1"})
        coords["noise_epoch"] = (
            "noise_step",
            noise_steps / attrs["steps_per_epoch"],
            {"long_name": "passes over the training set (effective)", "units": "1"},
        )
    ds = with_run_metadata(xr.Dataset(data_vars, coords=coords), run, "lrdynamics run", "lrdynamics.train")
    for attr, (section, key) in KEY_HYPERPARAMETERS.items():
        ds.attrs[attr] = run[section][key]
    # the weight decay actually used (derived from schedule.intrinsic_lr when that is set)
    ds.attrs["wd0"] = base_wd(run["schedule"], run["optimizer"]["momentum"])
    ds.attrs["updates_per_step"] = per_step
    if run["optimizer"]["name"] != "sgd":  # the values in force (after any scaling rule)
        ds.attrs.update({k: run["optimizer"][k] for k in ("beta1", "beta2", "eps")})
    ds.attrs.update(attrs)
    if ds.attrs.get("status") not in STATUSES:
        raise ValueError(f"status attribute must be one of {STATUSES}")
    return ds


def with_run_metadata(ds: xr.Dataset, run: dict, what: str, writer: str) -> xr.Dataset:
    """A run's dataset with its grid hyperparameters as length-1 dimensions (so runs stack
    with ``xr.combine_by_coords``) and the contract's global attributes."""
    hp = {k: coordinate_value(v) for k, v in run["hyperparameters"].items()}
    if hp:
        ds = ds.expand_dims({k: [v] for k, v in hp.items()})
        for k in hp:
            ds[k].attrs["long_name"] = f"grid hyperparameter {k}"
    ds.attrs.update(
        Conventions="CF-1.10",
        title=f"{what} {run['run']} of experiment {run['experiment']}",
        source=source_version(),
        history=f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}: written by {writer}",
        references=run.get("references", ""),
        config_json=json.dumps(run, sort_keys=True),
        experiment=run["experiment"],
        run=run["run"],
        dataset=run["dataset"],
    )
    return ds


def write_atomic(ds: xr.Dataset, path) -> None:
    """Write with zlib compression to a temporary name, then rename (never half a file)."""
    encoding = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)


def check_contract(ds: xr.Dataset) -> list[str]:
    """Problems with a run dataset against the contract (empty list: conforms)."""
    problems = []
    for attr in ("Conventions", "title", "source", "history", "references", "config_json", "status"):
        if attr not in ds.attrs:
            problems.append(f"missing global attribute {attr}")
    for name, var in ds.data_vars.items():
        for attr in ("long_name", "units"):
            if attr not in var.attrs:
                problems.append(f"variable {name} has no {attr}")
    if ds.attrs.get("status") not in STATUSES:
        problems.append(f"status {ds.attrs.get('status')!r} not in {STATUSES}")
    if ds.attrs.get("status") == "diverged" and "diverged_step" not in ds.attrs:
        problems.append("diverged run without diverged_step")
    return problems


def drop_hyperparameter_dims(obj):
    """A run (Dataset or DataArray) without its length-1 grid-hyperparameter dimensions."""
    return obj.squeeze([d for d in obj.dims if d not in RUN_DIMS], drop=True)


class RunFileError(ValueError):
    """A file given as a run file is not one (unreadable, or not our contract)."""


def open_runs(paths) -> list[xr.Dataset]:
    """Open run files (loaded into memory, files closed), each checked against the contract."""
    out = []
    for p in paths:
        try:
            with xr.open_dataset(p, engine="netcdf4") as ds:
                ds = ds.load()
        except Exception as err:  # noqa: BLE001 (netCDF4/HDF5 raise many kinds)
            raise RunFileError(f"{p}: not a readable netCDF run file ({type(err).__name__}: {err})") from err
        problems = check_contract(ds)
        if problems:
            shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
            raise RunFileError(
                f"{p}: not an lrdynamics run file ({shown}); run files are written by rule train "
                "(results/runs/<experiment>/<run>.nc)"
            )
        out.append(ds)
    return out


def combine_runs(runs: list[xr.Dataset]) -> xr.Dataset:
    """Stack the runs of one experiment along their grid hyperparameters.

    Arguments are explicit because xarray's defaults are changing; runs of different
    lengths (a diverged one) are padded with NaN (``join="outer"``). Global attributes
    of the first run are kept, those of each run stay in its own file.
    """
    return xr.combine_by_coords(
        runs, data_vars="all", coords="different", compat="equals", join="outer", combine_attrs="drop_conflicts"
    )
