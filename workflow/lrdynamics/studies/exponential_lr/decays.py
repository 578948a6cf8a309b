"""Decays that should leave no trace at equilibrium, in function space (docs/science.md
sections 2 and 8): a step decay on the LR against the same decay on the WD (equal intrinsic
LR after it), and Exp LR with an instant x``factor`` decay against Exp LR without it (the
same growth rate, so the same intrinsic LR, after it).

Each such experiment is a pair of seed ensembles (``training.ensemble``) that differ in one
grid key; the pair is compared by the function-space rule of section 3 (disjoint-half
distance of the predicted-label distributions against the matched split-half floor, first
crossing after the peak) from the last milestone on. Experiments of the figure that are
not such pairs (``explr_step``: single runs) are left to the figure.
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from lrdynamics.engine.contract import SEED_DIM
from lrdynamics.engine.runfile import file_attributes, runs_by_experiment
from lrdynamics.engine.schedules import alpha_root, milestone_steps
from lrdynamics.studies.exponential_lr import REFERENCE
from lrdynamics.studies.intrinsic_lr.equilibrium import _n_classes, _run, final_phase, function_space_distances

# A member's hyperparameters name its seed (ensembles: SEED_DIM; seed grids: training.seed).
SEED_KEYS = (SEED_DIM, "training.seed")


def grid_point(ds: xr.Dataset) -> str:
    """A member's grid point: its hyperparameters without the seed, as ``key=value`` text."""
    hp = {k: v for k, v in _run(ds)["hyperparameters"].items() if k not in SEED_KEYS}
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(hp.items()))


def decay_phase(ds: xr.Dataset) -> tuple[float, float, float]:
    """(lr, wd, intrinsic LR) of an ensemble's final phase: ``final_phase``'s, and for Exp
    LR (no WD in the run) the schedule's lr and wd with -ln alpha of them, which an instant
    decay does not change. (The pair's switch is its last milestone.)"""
    run = _run(ds)
    spec = run["schedule"]
    if spec["name"] == "exponential":
        return spec["lr"], spec["wd"], -math.log(alpha_root(spec["lr"], spec["wd"], run["optimizer"]["momentum"]))
    return final_phase(ds)[:3]


def last_milestone_step(ds: xr.Dataset) -> int:
    steps = milestone_steps(_run(ds)["schedule"], int(ds.attrs["steps_per_epoch"]))
    return max(steps, default=0)


def decay_pairs(runs: list[xr.Dataset]) -> dict[str, dict[str, list[xr.Dataset]]]:
    """The experiments that are pairs of ensembles: experiment -> {grid point: members}."""
    pairs = {}
    for name, members in runs_by_experiment(runs).items():
        if not all("test_predictions" in m for m in members):
            continue
        points: dict[str, list[xr.Dataset]] = {}
        for m in members:
            points.setdefault(grid_point(m), []).append(m)
        if len(points) == 2 and all(len(v) >= 4 for v in points.values()):
            pairs[name] = points
    return pairs


def decay_equilibrium(runs: list[xr.Dataset], resamples: int = 200) -> xr.Dataset:
    """results/analysis/decay_equilibrium.nc: per pair (``comparison``: the experiment), the
    distance of the second ensemble's label distribution to the first's against the matched
    floor, per evaluation, and the time both meet by the rule of section 3."""
    pairs = decay_pairs(runs)
    attrs = file_attributes("Decays at equal intrinsic LR: equilibrium in function space", REFERENCE, __name__)
    if not pairs:  # single runs (the paper config): nothing to compare in function space
        return xr.Dataset(coords={"comparison": np.array([], dtype=str)}, attrs=attrs)
    parts = []
    for name, points in pairs.items():
        labels = list(points)
        switch = max(last_milestone_step(points[label][0]) for label in labels)
        phases = [(*decay_phase(points[label][0]), switch) for label in labels]
        members = [m for group in points.values() for m in group]
        fs = function_space_distances(points, _n_classes(members), resamples, phases=phases, from_switch=True)
        fs = fs.isel(schedule=1).drop_vars("schedule").expand_dims(comparison=[name])
        # along comparison even for one pair (a scalar coordinate would not be)
        parts.append(fs.assign_coords(reference_point=("comparison", [labels[0]]),
                                      compared_point=("comparison", [labels[1]])))  # fmt: skip
    out = xr.concat(parts, dim="comparison", join="outer", coords="different", compat="equals")
    out.attrs.update(attrs, bootstrap_resamples=resamples)
    return out


def summary(analysis: xr.Dataset) -> list[str]:
    lines = [] if analysis.sizes["comparison"] else ["no experiment of the figure is a pair of seed ensembles"]
    for name in analysis.comparison.values:
        c = analysis.sel(comparison=name)
        lines.append(
            f"{name}: {c.compared_point.item()} vs {c.reference_point.item()}: peak distance "
            f"{float(c.history_peak_ratio):.2f}x the floor, equilibrium at step {float(c.history_equilibrium_step):g} "
            f"({float(c.history_equilibrium_relaxation_times):.2f} relaxation times after the switch at step "
            f"{int(c.history_switch_step)}; last step {int(c.step.max())})"
        )
    return lines
