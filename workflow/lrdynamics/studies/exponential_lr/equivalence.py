"""Analysis of exponential-LR equivalence experiments (Li & Arora 2020; docs/science.md
section 2): ``results/analysis/explr_equivalence.nc``.

An equivalence experiment has the grid keys ``schedule.wd_as_exp_lr: [false, true]``
and ``training.perturb_init: [false, true]`` (any other grid keys form separate pairs).
For each pair, over the evaluation steps:

- ``max_abs_logit_diff``: the largest |difference| of the two nets' stored test logits
  (the reference schedule with WD vs its exact exponential counterpart without WD);
- ``test_accuracy_diff``: counterpart minus reference;
- ``chaos_floor_logit_diff``: the same logit difference between the reference and the
  reference started one ulp away. Float rounding differs between two equivalent
  formulations and SGD amplifies it, so a pair can only be as close as this floor.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import drop_hyperparameter_dims, file_attributes, runs_by_experiment
from lrdynamics.studies.exponential_lr import REFERENCE

EQUIVALENCE_KEYS = ("wd_as_exp_lr", "perturb_init")
COUNTERPART_NAMES = {
    ("constant", "lr"): "Exp LR",
    ("step", "lr"): "TEXP",
    ("cosine", "lr"): "exponential cosine",
    ("constant", "wd"): "Exp LR",
    ("step", "wd"): "exp. counterpart of WD step decay",
    ("cosine", "wd"): "exp. counterpart of WD cosine",
}
LOGIT_DIFF_FLOOR = 1e-3  # below this a difference is float noise at any scale (issue criterion)


def _flags(ds: xr.Dataset) -> tuple[bool, bool]:
    run = json.loads(ds.attrs["config_json"])
    return bool(run["schedule"]["wd_as_exp_lr"]), bool(run["training"]["perturb_init"])


def _curve(ds: xr.Dataset, name: str) -> xr.DataArray:
    """A run's variable with its length-1 hyperparameter dimensions dropped."""
    return drop_hyperparameter_dims(ds[name]).reset_coords(drop=True)


def _logit_diff(a: xr.Dataset, b: xr.Dataset) -> xr.DataArray:
    la, lb = xr.align(_curve(a, "test_logits"), _curve(b, "test_logits"), join="inner")
    return np.abs(la - lb).max(["sample", "class"])


def group_pairs(runs: list[xr.Dataset]) -> dict[str, dict[tuple[bool, bool], xr.Dataset]]:
    """Runs of one experiment grouped by their other grid values, keyed by the two flags."""
    groups: dict[str, dict] = {}
    for ds in runs:
        hp = json.loads(ds.attrs["config_json"])["hyperparameters"]
        rest = ", ".join(f"{k}={v}" for k, v in hp.items() if k not in EQUIVALENCE_KEYS)
        groups.setdefault(rest, {})[_flags(ds)] = ds
    return groups


def pair_dataset(experiment: str, label: str, members: dict) -> xr.Dataset:
    """The comparison of one reference run with its counterpart and its perturbed twin."""
    missing = [k for k in ((False, False), (True, False), (False, True)) if k not in members]
    if missing:
        raise ValueError(
            f"experiment {experiment!r} ({label or 'no other grid keys'}) lacks runs with "
            f"(wd_as_exp_lr, perturb_init) = {missing}: an equivalence experiment needs the grid "
            "schedule.wd_as_exp_lr: [false, true] and training.perturb_init: [false, true]"
        )
    ref, eq, pert = members[(False, False)], members[(True, False)], members[(False, True)]
    for ds in (ref, eq, pert):
        if "test_logits" not in ds:
            raise ValueError(
                f"run {ds.attrs['run']} of {experiment!r} stored no test logits (evaluation.logit_samples)"
            )
    sched = json.loads(ref.attrs["config_json"])["schedule"]
    diff = _logit_diff(eq, ref)
    floor = _logit_diff(pert, ref)
    acc_ref, acc_eq = xr.align(_curve(ref, "test_accuracy"), _curve(eq, "test_accuracy"), join="inner")
    norm_ref, norm_eq = xr.align(_curve(ref, "total_weight_norm"), _curve(eq, "total_weight_norm"), join="inner")
    out = xr.Dataset(
        {
            "max_abs_logit_diff": diff.assign_attrs(
                long_name="max |logit difference| of reference and exponential counterpart", units="1"
            ),
            "chaos_floor_logit_diff": floor.assign_attrs(
                long_name="max |logit difference| of reference and reference started one ulp away", units="1"
            ),
            "test_accuracy_diff": (acc_eq - acc_ref).assign_attrs(
                long_name="test accuracy of the counterpart minus that of the reference", units="1"
            ),
            "test_accuracy_reference": acc_ref.assign_attrs(long_name="test accuracy of the reference", units="1"),
            "test_accuracy_counterpart": acc_eq.assign_attrs(
                long_name="test accuracy of the exponential counterpart", units="1"
            ),
            "weight_norm_reference": norm_ref.assign_attrs(long_name="|w| of the reference (with WD)", units="1"),
            "weight_norm_counterpart": norm_eq.assign_attrs(
                long_name="|w| of the exponential counterpart (without WD)", units="1"
            ),
        }
    )
    out = out.assign_coords(epoch=("step", ref["epoch"].sel(step=out.step).values))
    holds = bool((diff <= np.maximum(LOGIT_DIFF_FLOOR, 3 * floor)).all())
    counterpart = COUNTERPART_NAMES.get((sched["name"], sched["decay_target"]), "exponential counterpart")
    name = f"{experiment}: {sched['name']}" + (" (decay on WD)" if sched["decay_target"] == "wd" else "")
    name += f" vs {counterpart}" + (f" [{label}]" if label else "")
    scalars = {
        "experiment": experiment,
        "schedule": sched["name"],
        "decay_target": sched["decay_target"],
        "counterpart": counterpart,
        "lr0": ref.attrs["lr0"],
        "wd0": ref.attrs["wd0"],
        "momentum": ref.attrs["momentum"],
        "steps_per_epoch": ref.attrs["steps_per_epoch"],
        "dtype": json.loads(ref.attrs["config_json"])["training"]["dtype"],
        "status": ",".join(sorted({ds.attrs["status"] for ds in (ref, eq, pert)})),
    }
    out = out.expand_dims(pair=[name])
    out["within_chaos_criterion"] = ("pair", [holds])
    out["within_chaos_criterion"].attrs.update(
        long_name=f"max_abs_logit_diff <= max({LOGIT_DIFF_FLOOR}, 3 x chaos_floor_logit_diff) at every step",
        units="1",
    )
    for key, value in scalars.items():
        out = out.assign_coords({key: ("pair", [value])})
    return out


def explr_equivalence(runs: list[xr.Dataset]) -> xr.Dataset:
    """All pairs of the given runs (of one or more equivalence experiments)."""
    pairs = [
        pair_dataset(exp, label, members)
        for exp, exp_runs in runs_by_experiment(runs).items()
        for label, members in group_pairs(exp_runs).items()
    ]
    out = xr.concat(pairs, dim="pair", join="outer", coords="different", compat="equals", data_vars="all")
    title = "Exponential-LR equivalence: each schedule with WD vs its exact counterpart without WD"
    out.attrs.update(file_attributes(title, REFERENCE, __name__), logit_diff_floor=LOGIT_DIFF_FLOOR)
    return out


def summary(analysis: xr.Dataset) -> list[str]:
    """One log line per pair: its largest logit gap, the chaos floor, the verdict."""
    lines = []
    for pair in analysis.pair.values:
        p = analysis.sel(pair=pair)
        lines.append(
            f"{pair}: max logit diff {float(p.max_abs_logit_diff.max()):.3g}, chaos floor "
            f"{float(p.chaos_floor_logit_diff.max()):.3g}, within criterion: {bool(p.within_chaos_criterion)}"
        )
    return lines
