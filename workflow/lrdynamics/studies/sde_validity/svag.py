"""SVAG's convergence in l (docs/science.md section 4): ``results/analysis/svag.nc``.

The runs of one experiment share the schedule and start and differ in the SVAG parameter
l (and the seed); as l grows their curves should converge to those of the SDE, so each
l is compared with the largest.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import drop_hyperparameter_dims, file_attributes
from lrdynamics.studies.sde_validity import REFERENCE


def svag_analysis(runs: list[xr.Dataset]) -> xr.Dataset:
    """Test accuracy and loss per l at matched effective steps, and the distance of each
    l from the largest l (mean |difference| over the evaluation points, and at the end).

    Runs with the same l (several seeds) are averaged first; the runs of an experiment
    share the schedule and start, so their ``step`` (effective steps) coordinates agree.
    """
    by_l: dict[int, list[xr.Dataset]] = {}
    diverged: list[str] = []  # reported in the dataset and the figure, not averaged in
    for ds in runs:
        if ds.attrs["status"] != "completed":
            diverged.append(f"{ds.attrs['run']} (step {ds.attrs.get('diverged_step', '?')})")
            continue
        by_l.setdefault(int(ds.attrs["svag"]), []).append(drop_hyperparameter_dims(ds))
    if len(by_l) < 2:
        raise ValueError(f"the SVAG analysis needs completed runs with at least two values of l, got {sorted(by_l)}")
    ls = sorted(by_l)
    names = ["test_accuracy", "test_loss", "train_loss", "train_accuracy"]
    per_l = []
    for l in ls:
        group = [ds[names] for ds in by_l[l]]
        steps = group[0].step
        if any(not np.array_equal(g.step, steps) for g in group):
            raise ValueError(f"runs with l={l} were evaluated at different effective steps")
        per_l.append(xr.concat(group, dim="seed").mean("seed").expand_dims(l=[l]))
    curves = xr.concat(per_l, dim="l", join="inner", coords="minimal", compat="override")  # matched steps only
    reference = curves.sel(l=ls[-1])
    out = xr.Dataset(coords={"l": ("l", ls, {"long_name": "SVAG parameter l", "units": "1"})})
    out = out.assign_coords(step=curves.step)
    out["step"].attrs.update(long_name="effective steps (updates / l)", units="1")
    for name in names:
        out[name] = curves[name]
        out[name].attrs.update(long_name=f"{name.replace('_', ' ')} (mean over seeds)", units="1")
        diff = abs(curves[name] - reference[name])
        out[f"{name}_distance"] = diff.mean("step")
        out[f"{name}_distance"].attrs.update(
            long_name=f"mean over effective steps of |{name} - {name} at l={ls[-1]}|", units="1"
        )
        out[f"final_{name}_distance"] = diff.isel(step=-1)
        out[f"final_{name}_distance"].attrs.update(
            long_name=f"|{name} - {name} at l={ls[-1]}| at the last effective step", units="1"
        )
    out["seeds"] = ("l", [len(by_l[l]) for l in ls], {"long_name": "runs averaged", "units": "1"})
    out.attrs.update(
        file_attributes("SVAG convergence: curves per l at matched effective steps", REFERENCE, __name__),
        reference_l=ls[-1],
        diverged_runs=", ".join(diverged) or "none",
    )
    return out


def summary(analysis: xr.Dataset) -> list[str]:
    """Each l's distance from the largest l, over the run and at the end."""
    return [
        f"l={l}: test accuracy distance from l={analysis.reference_l}: mean {d:.4f}, final {final:.4f}"
        for l, d, final in zip(
            analysis.l.values, analysis.test_accuracy_distance.values, analysis.final_test_accuracy_distance.values
        )
    ]
