"""One dataset per experiment: every run of an experiment in one hypercube along its grid
(``results/<experiment>.nc``, rule ``combine_experiment``)."""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from lrdynamics.engine.contract import MEMBER_VARIABLES, RUN_DIMS, SEED_DIM, ensemble_size, run_outcome
from lrdynamics.engine.runfile import file_attributes, grid_dims, run_attributes


def combine_runs(runs: list[xr.Dataset]) -> xr.Dataset:
    """Stack the runs of one experiment along their grid hyperparameters.

    Arguments are explicit because xarray's defaults are changing; runs of different
    lengths (a diverged one) are padded with NaN (``join="outer"``). Global attributes
    of the first run are kept, those of each run stay in its own file.
    """
    options = dict(data_vars="all", coords="different", compat="equals", join="outer", combine_attrs="drop_conflicts")
    dims = grid_dims(runs[0])
    if SEED_DIM in dims and len(dims) > 1:
        # Seeds first, one concat per grid point (combine_by_coords would concatenate the
        # other dims once per seed: 641 concats for 8 ensembles of 128 members, not 8 + 5)
        groups: dict[tuple, list[xr.Dataset]] = {}
        for ds in runs:
            groups.setdefault(tuple(ds[d].item() for d in dims if d != SEED_DIM), []).append(ds)
        runs = [xr.concat(sorted(group, key=lambda ds: ds[SEED_DIM].item()), dim=SEED_DIM, **options)
                for group in groups.values()]  # fmt: skip
    return xr.combine_by_coords(runs, **options)


# Per-run attributes that say what happened to a run: variables of the experiment dataset
# (along its grid), kept even when every run agrees. name: (long_name, units, fill).
RUN_OUTCOME_ATTRS = {
    "status": ("run status: completed, diverged, or missing (no run file for this grid point)", None, "missing"),
    "diverged_step": ("effective step at which the run diverged (-1: it did not)", "1", np.nan),
    "run": ("run name (the file results/runs/<experiment>/<run>.nc)", None, ""),
    "config_json": ("the run's full resolved config (JSON)", None, ""),
}
# What a run cost: variables along the grid even when all runs agree, as the members of
# one ensemble do (they share their job's wall time and rate).
RUN_COST_ATTRS = ("wall_time_s", "steps_per_second", "noise_measurement_time_s", "sharpness_time_s")
# Attributes that describe the file rather than the run: never lifted into variables.
FILE_ATTRS = ("title", "history", "Conventions")


def _scalar_attr(value) -> bool:
    return isinstance(value, (str, int, float, np.integer, np.floating))


def _union_index(runs: list[xr.Dataset], dim: str):
    """The labels of a run dimension over all runs: sorted numbers, or first-seen order."""
    labels = list(dict.fromkeys(v for ds in runs if dim in ds.dims for v in ds[dim].values.tolist()))
    return sorted(labels) if all(isinstance(v, (int, float)) for v in labels) else labels


def _reindexed(ds: xr.Dataset, axes: dict) -> xr.Dataset:
    """``ds.reindex(axes)``, skipped when the run has those labels already (the members of
    an ensemble, most runs of a grid: reindexing a thousand of them is most of a combine)."""
    if all(list(ds[d].values.tolist()) == list(labels) for d, labels in axes.items()):
        return ds
    return ds.reindex(axes)


def _on_common_axes(runs: list[xr.Dataset]) -> list[xr.Dataset]:
    """The runs reindexed to the union of their run-dimension labels (NaN where a run has
    none: a diverged run's later steps), so that they differ only along the grid. A
    coordinate along a run dimension (epoch along step) that all runs agree on is filled in
    everywhere; one they disagree on (epoch when the batch size varies) stays per run."""
    dims = [d for d in RUN_DIMS if any(d in ds.dims for ds in runs)]
    axes = {d: _union_index(runs, d) for d in dims}
    out = [_reindexed(ds, {d: axes[d] for d in dims if d in ds.dims}) for ds in runs]
    for name in {c for ds in runs for c in ds.coords if c not in ds.dims}:
        carriers = [ds for ds in runs if name in ds.coords]
        if len(carriers) != len(runs) or carriers[0][name].ndim != 1:
            continue
        (dim,) = carriers[0][name].dims
        first = carriers[0]
        if all(np.array_equal(ds[dim].values, first[dim].values) and np.array_equal(ds[name].values, first[name].values)
               for ds in carriers[1:]) and np.array_equal(first[dim].values, axes[dim]):  # fmt: skip
            continue  # the same labels and values everywhere (an ensemble's members): nothing to fill
        merged = first[name].to_series()
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
    differing |= set(RUN_COST_ATTRS) & keys  # per run even where they agree (an ensemble's members)
    lifted = [k for k in RUN_OUTCOME_ATTRS if k in keys] + sorted(differing - set(RUN_OUTCOME_ATTRS))
    stacked = []
    for ds in _on_common_axes(runs):
        ds = ds.copy()  # its own attrs: the lifted ones are popped
        new = {}
        for key in lifted:
            long_name, units, _ = RUN_OUTCOME_ATTRS.get(key, (f"run attribute {key}", None, None))
            value = ds.attrs.pop(key)
            if key == "diverged_step":
                value = float(value) if value >= 0 else np.nan  # NaN where it did not diverge
            attrs = {"long_name": long_name} | ({"units": units} if units else {})
            data = np.full([1] * len(dims), value, dtype=object if isinstance(value, str) else None)
            new[key] = xr.DataArray(data, dims=dims, attrs=attrs)
        stacked.append(ds.assign(new))  # one merge per run, not one per attribute
    present = {tuple(ds[d].item() for d in dims) for ds in stacked}
    axes = [sorted({p[i] for p in present}) for i in range(len(dims))]
    holes = [dict(zip(dims, p)) for p in itertools.product(*axes) if p not in present]
    stacked += [_missing_run(stacked[0], point) for point in holes]
    combined = combine_runs(stacked) if len(stacked) > 1 else stacked[0]
    # a run dimension without labels in the runs (sample, class) gets none here either,
    # whether or not some run was reindexed on the way
    bare = [d for d in RUN_DIMS if d in combined.dims and not any(d in ds.coords for ds in runs)]
    combined = combined.drop_vars([d for d in bare if d in combined.coords])
    for var in combined.variables.values():
        var.encoding = {}  # the runs' int encodings would turn the NaN padding into garbage
    first = runs[0].attrs
    combined.attrs = {k: v for k, v in combined.attrs.items() if k not in lifted}
    title = f"experiment {first.get('experiment')}: {len(runs)} runs along ({', '.join(dims)})"
    combined.attrs.update(
        file_attributes(title, combined.attrs.get("references", ""), "lrdynamics.engine.combine"),
        grid_hyperparameters=", ".join(dims),
        runs_missing=len(holes),
    )
    return combined


def ensemble_dataset(members: list[xr.Dataset], run: dict, status: dict) -> xr.Dataset:
    """An ensemble's run file: its members' run datasets (``run_dataset`` of each member
    run) along ``seed``, a diverged member's later steps NaN; each member's outcome in the
    MEMBER_VARIABLES; the attributes of the ensemble's run, with ``status`` diverged
    (``diverged_step`` the earliest) when any member diverged."""
    stacked = []
    for ds in _on_common_axes(members):
        for name, (long_name, units, attr) in MEMBER_VARIABLES.items():
            value = ds.attrs[attr]
            data = np.array([value], dtype=object if isinstance(value, str) else np.int64)
            ds[name] = xr.DataArray(data, dims=[SEED_DIM], attrs={"long_name": long_name, "units": units})
        stacked.append(ds)
    ds = xr.concat(stacked, dim=SEED_DIM, data_vars="all", coords="minimal", compat="override", join="outer",
                   combine_attrs="override")  # fmt: skip
    # reindexing gave the coordinate-less dimensions (sample, class) index coordinates
    ds = ds.drop_vars([c for c in ds.coords if c not in members[0].coords])
    for var in ds.variables.values():
        var.encoding = {}
    diverged = [m.attrs for m in members if m.attrs["status"] == "diverged"]
    first = min(diverged, key=lambda a: a["diverged_update"], default=run_outcome())
    outcome = {k: first[k] for k in run_outcome()}
    member_outcome = set(outcome) | {attr for _, _, attr in MEMBER_VARIABLES.values()}
    ds.attrs = {k: v for k, v in members[0].attrs.items() if k not in member_outcome}
    ds.attrs.update(run_attributes(run, "lrdynamics ensemble", "lrdynamics.engine.ensemble"))
    ds.attrs.update(outcome)
    ds.attrs.update(ensemble_size=ensemble_size(run), members_diverged=len(diverged))
    return ds
