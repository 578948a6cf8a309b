"""Run files: one netCDF file per run, self-describing, written atomically.

Dimensions: ``step`` for curves, ``layer`` for per-layer quantities, and one length-1
dimension per grid hyperparameter (its value as coordinate), so that
``xr.combine_by_coords`` stacks the runs of an experiment into a hypercube. Every data
variable has ``long_name`` and ``units`` (the tables of ``engine.contract``). Global
attributes: ``Conventions``, ``title``, ``source``, ``history``, ``references``,
``config_json``, ``status`` and the key hyperparameters as scalars.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import xarray as xr

import lrdynamics
from lrdynamics.engine.adaptive import updates_per_step
from lrdynamics.engine.contract import (
    CONVENTIONS,
    COORDINATES,
    ENSEMBLE_ATTRS,
    GD_COORDINATES,
    GD_KIND,
    GD_VARIABLES,
    GLOBAL_ATTRIBUTES,
    KEY_HYPERPARAMETERS,
    MEMBER_VARIABLES,
    NOISE_VARIABLES,
    OPTIONAL_NOISE_VARIABLES,
    OPTIONAL_VARIABLES,
    RUN_DIMS,
    SEED_DIM,
    STATUSES,
    VARIABLES,
    format_value,
    member_run,
)
from lrdynamics.engine.files import atomic_path
from lrdynamics.engine.schedules import base_wd

# What an SGD run file holds (the start of its title).
SGD_RUN = "lrdynamics run"


@functools.cache
def source_version() -> str:
    """Package version and git commit of the code that made a file (asked of git once per
    process: an ensemble's file is assembled from a dataset per member)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(Path(lrdynamics.__file__).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return f"lrdynamics {lrdynamics.__version__} (git {commit})"


def file_attributes(title: str, references: str, writer: str) -> dict:
    """The global attributes of every file the workflow writes (run, experiment and analysis
    files): the CF conventions, what the file holds, the paper(s) it reproduces, the code
    that made it, and when."""
    return {
        "Conventions": CONVENTIONS,
        "title": title,
        "source": source_version(),
        "history": f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}: written by {writer}",
        "references": references,
    }


def coordinate_value(value):
    """A hyperparameter value usable as a netCDF coordinate (lists become text)."""
    if isinstance(value, (list, tuple, dict)):
        return format_value(value)
    return value


def _variable(table: dict, name: str, values) -> xr.Variable:
    long_name, units, dims = table[name]
    return xr.Variable(dims, values, {"long_name": long_name, "units": units})


def _coordinate(table: dict, name: str, values) -> tuple:
    long_name, units, dim = table[name]
    return (dim, values, {"long_name": long_name} | ({"units": units} if units else {}))


def run_dataset(
    records: dict, layers: list[str], run: dict, attrs: dict, noise_records: dict | None = None
) -> xr.Dataset:
    """Assemble an SGD run's dataset from per-evaluation records (lists of equal length).

    ``records`` maps each name of VARIABLES (and ``step``, ``epoch``) to a list with one
    entry per evaluation point (per-layer ones: a list per point); ``step`` counts
    effective steps (updates / l under SVAG). ``noise_records`` maps ``noise_step`` and the
    names of NOISE_VARIABLES to a list per gradient-noise measurement (empty: none made).
    """
    steps = np.asarray(records["step"], dtype=np.int64)
    per_step = updates_per_step(run["optimizer"])
    data_vars = {}
    for name, (_, _, dims) in VARIABLES.items():
        shape = (len(steps), *([len(layers)] if "layer" in dims else []))
        data_vars[name] = _variable(VARIABLES, name, np.asarray(records[name], dtype=np.float64).reshape(shape))
    for name in OPTIONAL_VARIABLES:
        if records.get(name):
            data_vars[name] = _variable(OPTIONAL_VARIABLES, name, np.stack(records[name]))
    if "test_predictions" in data_vars:  # labels: small integers, not float64
        data_vars["test_predictions"] = data_vars["test_predictions"].astype(np.int16)
    if noise_records and noise_records["noise_step"]:
        for name in NOISE_VARIABLES:
            data_vars[name] = _variable(NOISE_VARIABLES, name, np.asarray(noise_records[name], dtype=np.float64))
        for name in OPTIONAL_NOISE_VARIABLES:  # only where measured (per_example)
            values = np.asarray(noise_records.get(name, []), dtype=np.float64)
            if values.size and np.isfinite(values).any():
                data_vars[name] = _variable(OPTIONAL_NOISE_VARIABLES, name, values)
    coords = {
        "step": _coordinate(COORDINATES, "step", steps),
        "updates_done": _coordinate(COORDINATES, "updates_done", steps * per_step),
        "epoch": _coordinate(COORDINATES, "epoch", np.asarray(records["epoch"], dtype=np.float64)),
        "layer": _coordinate(COORDINATES, "layer", np.asarray(layers, dtype=str)),
    }
    if "gradient_signal" in data_vars:
        noise_steps = np.asarray(noise_records["noise_step"], dtype=np.int64)
        coords["noise_step"] = _coordinate(COORDINATES, "noise_step", noise_steps)
        coords["noise_epoch"] = _coordinate(COORDINATES, "noise_epoch", noise_steps / attrs["steps_per_epoch"])
    ds = with_run_metadata(xr.Dataset(data_vars, coords=coords), run, SGD_RUN, "lrdynamics.engine.trainer")
    for attr, (section, key) in KEY_HYPERPARAMETERS.items():
        ds.attrs[attr] = run[section][key]
    # the weight decay actually used (derived from schedule.intrinsic_lr when that is set)
    ds.attrs["wd0"] = base_wd(run["schedule"], run["optimizer"]["momentum"])
    ds.attrs["updates_per_step"] = per_step
    if run["optimizer"]["name"] != "sgd":  # the values in force (after any scaling rule)
        ds.attrs.update({k: run["optimizer"][k] for k in ("beta1", "beta2", "eps")})
    return _with_status(ds, attrs)


def gd_run_dataset(records: dict, sharp: dict, layers: list[str], run: dict, attrs: dict) -> xr.Dataset:
    """A full-batch GD run's dataset: ``records`` has one row per GD step (``step``,
    ``train_loss``, ``train_accuracy``, ``layer_norm``), ``sharp`` one per sharpness
    measurement (``sharpness_step``, ``sharpness``, ``hessian_products``)."""
    n, k = len(records["step"]), run["sharpness_eigenvalues"]
    values = {
        "train_loss": np.asarray(records["train_loss"], dtype=np.float64),
        "train_accuracy": np.asarray(records["train_accuracy"], dtype=np.float64),
        "layer_norm": np.asarray(records["layer_norm"], dtype=np.float64).reshape(n, len(layers)),
        "sharpness": np.asarray(sharp["sharpness"], dtype=np.float64).reshape(-1, k),
        "hessian_products": np.asarray(sharp["hessian_products"], dtype=np.float64),
    }
    coords = {
        "step": _coordinate(GD_COORDINATES, "step", np.asarray(records["step"], dtype=np.int64)),
        "sharpness_step": _coordinate(
            GD_COORDINATES, "sharpness_step", np.asarray(sharp["sharpness_step"], dtype=np.int64)
        ),
        "eigenvalue": _coordinate(GD_COORDINATES, "eigenvalue", np.arange(1, k + 1)),
        "layer": _coordinate(GD_COORDINATES, "layer", np.asarray(layers, dtype=str)),
    }
    data_vars = {name: _variable(GD_VARIABLES, name, values[name]) for name in GD_VARIABLES}
    ds = with_run_metadata(
        xr.Dataset(data_vars, coords=coords), run, "lrdynamics full-batch GD run", "lrdynamics.engine.gd"
    )
    ds.attrs.update(
        kind=GD_KIND,
        loss=run["loss"],
        activation=run["model"]["activation"],
        norm=run["model"]["norm"],
        examples=run["examples"],
        lr_multiple=run["lr_multiple"] if run["lr_multiple"] is not None else math.nan,
    )
    return _with_status(ds, attrs)


def _with_status(ds: xr.Dataset, attrs: dict) -> xr.Dataset:
    """The run's outcome and cost attributes (``status`` one of STATUSES) added."""
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
    ds.attrs.update(run_attributes(run, what, writer))
    return ds


def run_title(run: dict, what: str = SGD_RUN) -> str:
    return f"{what} {run['run']} of experiment {run['experiment']}"


def run_attributes(run: dict, what: str, writer: str) -> dict:
    """The global attributes that say which run a file holds."""
    return {
        **file_attributes(run_title(run, what), run.get("references", ""), writer),
        "config_json": json.dumps(run, sort_keys=True),
        "experiment": run["experiment"],
        "run": run["run"],
        "dataset": run["dataset"],
        # a rehearsal's run (lrdynamics.config.rehearsal) says so in every file it makes
        **({"rehearsal": json.dumps(run["rehearsal"], sort_keys=True)} if run.get("rehearsal") else {}),
    }


def is_ensemble(ds: xr.Dataset) -> bool:
    """An ensemble's file (``training.ensemble`` > 1): its members along ``seed``."""
    return "member_status" in ds.data_vars


def ensemble_members(ds: xr.Dataset) -> list[xr.Dataset]:
    """The members of an ensemble file, each as the run file of its seed alone would be:
    a length-1 ``seed`` dimension, the member's own config_json, run name and status, and
    for a diverged member the steps it recorded only. Readers of runs see no difference
    between an ensemble and the runs of a grid over ``training.seed``."""
    run = json.loads(ds.attrs["config_json"])
    shared = {k: v for k, v in ds.attrs.items() if k not in ENSEMBLE_ATTRS}
    out = []
    for k, seed in enumerate(ds[SEED_DIM].values.tolist()):
        m = ds.isel({SEED_DIM: slice(k, k + 1)})  # a view: no copy per member
        outcome = {attr: m[name].item() for name, (_, _, attr) in MEMBER_VARIABLES.items()}
        m = m.drop_vars(list(MEMBER_VARIABLES))
        if outcome["status"] == "diverged":  # the steps its own run would have recorded
            m = m.isel(step=m["updates_done"].values <= outcome["diverged_update"])
            if "noise_step" in m.dims:
                m = m.isel(
                    noise_step=m["noise_step"].values * m.attrs["updates_per_step"] <= outcome["diverged_update"]
                )
        if "test_predictions" in m and m["test_predictions"].dtype != np.int16:
            m["test_predictions"] = m["test_predictions"].astype(np.int16)
        member = member_run(run, seed)
        m.attrs = {**shared, **outcome, "title": run_title(member), "config_json": json.dumps(member, sort_keys=True),
                   "run": member["run"], "seed": seed}  # fmt: skip
        out.append(m)
    return out


def write_atomic(ds: xr.Dataset, path) -> None:
    """Write with zlib compression to a temporary name, then rename (never half a file)."""
    # complevel 1: most of level 4's saving at a fraction of its time (ensembles of
    # predictions are tens of MB)
    encoding = {v: {"zlib": True, "complevel": 1} for v in ds.data_vars}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)


def check_contract(ds: xr.Dataset) -> list[str]:
    """Problems with a run dataset against the contract (empty list: conforms)."""
    problems = []
    for attr in GLOBAL_ATTRIBUTES:
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


def runs_by_experiment(runs: list[xr.Dataset]) -> dict[str, list[xr.Dataset]]:
    """Runs grouped by their experiment, in the order the experiments first appear."""
    groups: dict[str, list[xr.Dataset]] = {}
    for ds in runs:
        groups.setdefault(ds.attrs["experiment"], []).append(ds)
    return groups


def unique_runs(*groups: list[xr.Dataset]) -> list[xr.Dataset]:
    """The runs of several lists, each (experiment, run) once, in order of first appearance."""
    seen: dict[tuple, xr.Dataset] = {}
    for ds in (ds for group in groups for ds in group):
        seen.setdefault((ds.attrs["experiment"], ds.attrs["run"]), ds)
    return list(seen.values())


def drop_hyperparameter_dims(obj):
    """A run (Dataset or DataArray) without its length-1 grid-hyperparameter dimensions."""
    return obj.squeeze(grid_dims(obj), drop=True)


class RunFileError(ValueError):
    """A file given as a run file is not one (unreadable, or not our contract)."""


def open_runs(paths) -> list[xr.Dataset]:
    """Open run files (loaded into memory, files closed), each checked against the contract;
    an ensemble file gives its members (``ensemble_members``)."""
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
        out.extend(ensemble_members(ds) if is_ensemble(ds) else [ds])
    return out
