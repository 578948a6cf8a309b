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
import itertools
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


def grid_dims(obj) -> list[str]:
    """The grid-hyperparameter dimensions of a run or of runs combined (not RUN_DIMS)."""
    return [d for d in obj.dims if d not in RUN_DIMS]


def drop_hyperparameter_dims(obj):
    """A run (Dataset or DataArray) without its length-1 grid-hyperparameter dimensions."""
    return obj.squeeze(grid_dims(obj), drop=True)


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


# Per-run attributes that say what happened to a run: variables of the experiment dataset
# (along its grid), kept even when every run agrees. name: (long_name, units, fill).
RUN_OUTCOME_ATTRS = {
    "status": ("run status: completed, diverged, or missing (no run file for this grid point)", None, "missing"),
    "diverged_step": ("effective step at which the run diverged (-1: it did not)", "1", np.nan),
    "run": ("run name (the file results/runs/<experiment>/<run>.nc)", None, ""),
    "config_json": ("the run's full resolved config (JSON)", None, ""),
}
# Attributes that describe the file rather than the run: never lifted into variables.
FILE_ATTRS = ("title", "history", "Conventions")


def _scalar_attr(value) -> bool:
    return isinstance(value, (str, int, float, np.integer, np.floating))


def _union_index(runs: list[xr.Dataset], dim: str):
    """The labels of a run dimension over all runs: sorted numbers, or first-seen order."""
    labels = list(dict.fromkeys(v for ds in runs if dim in ds.dims for v in ds[dim].values.tolist()))
    return sorted(labels) if all(isinstance(v, (int, float)) for v in labels) else labels


def _on_common_axes(runs: list[xr.Dataset]) -> list[xr.Dataset]:
    """The runs reindexed to the union of their run-dimension labels (NaN where a run has
    none: a diverged run's later steps), so that they differ only along the grid. A
    coordinate along a run dimension (epoch along step) that all runs agree on is filled in
    everywhere; one they disagree on (epoch when the batch size varies) stays per run."""
    dims = [d for d in RUN_DIMS if any(d in ds.dims for ds in runs)]
    axes = {d: _union_index(runs, d) for d in dims}
    out = [ds.reindex({d: axes[d] for d in dims if d in ds.dims}) for ds in runs]
    for name in {c for ds in runs for c in ds.coords if c not in ds.dims}:
        carriers = [ds for ds in runs if name in ds.coords]
        if len(carriers) != len(runs) or carriers[0][name].ndim != 1:
            continue
        (dim,) = carriers[0][name].dims
        merged = carriers[0][name].to_series()
        for ds in carriers[1:]:
            merged = merged.combine_first(ds[name].to_series())
        if all(np.array_equal(ds[name].values, merged.loc[ds[dim].values].values) for ds in carriers):
            values = merged.reindex(axes[dim]).values
            out = [ds.assign_coords({name: (dim, values, ds[name].attrs)}) for ds in out]
    return out


def _missing_run(template: xr.Dataset, point: dict) -> xr.Dataset:
    """A placeholder for a grid point without a run: its variables NaN (fill text for
    text), its status ``missing``; the grid coordinates set to ``point``."""
    ds = template.copy(deep=True)
    for name in ds.data_vars:
        values = ds[name].values
        fill = np.nan if values.dtype.kind in "iufb" else RUN_OUTCOME_ATTRS.get(name, (None, None, ""))[2]
        ds[name] = ds[name].copy(data=np.full(values.shape, fill, dtype=None if fill is np.nan else object))
    return ds.assign_coords({d: [v] for d, v in point.items()})


def experiment_dataset(runs: list[xr.Dataset]) -> xr.Dataset:
    """All runs of one experiment as one hypercube along its grid hyperparameters.

    Curves of different lengths (a diverged run stops early) are padded with NaN; grid
    points without a run are NaN with status ``missing``. What happened to each run
    (RUN_OUTCOME_ATTRS) and every other scalar attribute that differs between runs (wall
    time, steps/s, ...) become variables along the grid; attributes shared by all runs
    stay global. Memory is linear in the number of runs (no pairwise alignment).
    """
    if not runs:
        raise ValueError("experiment_dataset: no runs given")
    experiments = {ds.attrs.get("experiment") for ds in runs}
    if len(experiments) > 1:
        raise ValueError(f"experiment_dataset: runs of several experiments {sorted(map(str, experiments))}")
    dims = grid_dims(runs[0])
    if any(sorted(grid_dims(ds)) != sorted(dims) for ds in runs):
        raise ValueError("experiment_dataset: the runs do not share grid hyperparameters")
    keys = set.intersection(*({k for k, v in ds.attrs.items() if _scalar_attr(v)} for ds in runs))
    differing = {k for k in keys if len({str(ds.attrs[k]) for ds in runs}) > 1} - set(FILE_ATTRS)
    differing -= set(runs[0].variables)  # a grid hyperparameter is also a key attribute (seed)
    lifted = [k for k in RUN_OUTCOME_ATTRS if k in keys] + sorted(differing - set(RUN_OUTCOME_ATTRS))
    stacked = []
    for ds in _on_common_axes(runs):
        for key in lifted:
            long_name, units, _ = RUN_OUTCOME_ATTRS.get(key, (f"run attribute {key}", None, None))
            value = ds.attrs.pop(key)
            if key == "diverged_step":
                value = float(value) if value >= 0 else np.nan  # NaN where it did not diverge
            attrs = {"long_name": long_name} | ({"units": units} if units else {})
            data = np.full([1] * len(dims), value, dtype=object if isinstance(value, str) else None)
            ds[key] = xr.DataArray(data, dims=dims, attrs=attrs)
        stacked.append(ds)
    present = {tuple(ds[d].item() for d in dims) for ds in stacked}
    axes = [sorted({p[i] for p in present}) for i in range(len(dims))]
    holes = [dict(zip(dims, p)) for p in itertools.product(*axes) if p not in present]
    stacked += [_missing_run(stacked[0], point) for point in holes]
    combined = combine_runs(stacked) if len(stacked) > 1 else stacked[0]
    for var in combined.variables.values():
        var.encoding = {}  # the runs' int encodings would turn the NaN padding into garbage
    first = runs[0].attrs
    combined.attrs = {k: v for k, v in combined.attrs.items() if k not in lifted}
    combined.attrs.update(
        Conventions=first.get("Conventions", "CF-1.10"),
        title=f"experiment {first.get('experiment')}: {len(runs)} runs along ({', '.join(dims)})",
        history=f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}: combined by lrdynamics.record",
        source=source_version(),
        grid_hyperparameters=", ".join(dims),
        runs_missing=len(holes),
    )
    return combined
