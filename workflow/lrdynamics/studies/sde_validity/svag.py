"""SVAG's convergence in l (docs/science.md section 4): ``results/analysis/svag.nc``.

The runs of one experiment share the schedule and start and differ in the SVAG parameter
l (and the seed); as l grows their curves should converge to those of the SDE, so each
l is compared with the largest.

The rate: SVAG's error is O(1/l) in expectation, so the seed-mean curves f_l of
successive l (1, 2, 4, ...) differ by Delta_l = mean_t |f_l - f_2l| ~ C/l, and the
exponent p of Delta_l ~ l^(-p) is fitted on log-log axes, with a CI from resampling the
seeds of every l (docs/science.md section 8). Seed noise gives Delta_l a floor that does
not shrink with l; it is estimated from the split halves of each l's seeds.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import drop_hyperparameter_dims, file_attributes
from lrdynamics.studies.intrinsic_lr.equilibrium import _loglog_fit
from lrdynamics.studies.sde_validity import REFERENCE

RATE_METRIC = "test_accuracy"


def successive_distances(seed_curves: list[np.ndarray]) -> np.ndarray:
    """Delta_l = mean over steps of |f_l - f_2l| for each pair of successive l, from the
    (seed, step) curves of each l."""
    means = [c.mean(0) for c in seed_curves]
    return np.array([np.mean(np.abs(a - b)) for a, b in zip(means[:-1], means[1:])])


def seed_noise_floor(seed_curves: list[np.ndarray]) -> np.ndarray:
    """Per pair of successive l, the Delta that seed noise alone gives: the split-half
    |difference| of each l's mean curve (halves of K/2 seeds), divided by sqrt(2) to be that
    of two means of K seeds, averaged over the pair's two l (NaN: fewer than 2 seeds)."""
    half = []
    for c in seed_curves:
        k = len(c) // 2
        half.append(np.mean(np.abs(c[:k].mean(0) - c[k : 2 * k].mean(0))) / np.sqrt(2) if k else np.nan)
    return np.array([(a + b) / 2 for a, b in zip(half[:-1], half[1:])])


def convergence_rate(seed_curves: list[np.ndarray], ls: list[int], resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict:  # fmt: skip
    """The exponent p of Delta_l ~ l^(-p), with a CI from resampling each l's seeds."""
    pair_l = np.asarray(ls[:-1], dtype=float)
    delta = successive_distances(seed_curves)
    slope = _loglog_fit(pair_l, delta)[0]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(resamples if all(len(c) > 1 for c in seed_curves) else 0):
        resampled = [c[rng.integers(0, len(c), len(c))] for c in seed_curves]
        boots.append(-_loglog_fit(pair_l, successive_distances(resampled))[0])
    lo, hi = np.nanquantile(boots, [(1 - level) / 2, (1 + level) / 2]) if boots else (np.nan, np.nan)
    return {"delta": delta, "floor": seed_noise_floor(seed_curves), "exponent": -slope, "lo": lo, "hi": hi}


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
    if all(ls[i + 1] == 2 * ls[i] for i in range(len(ls) - 1)) and len(ls) >= 3:
        steps = out.step.values
        seed_curves = [np.stack([ds[RATE_METRIC].sel(step=steps).values.reshape(len(steps)) for ds in by_l[l]])
                       for l in ls]  # fmt: skip
        rate = convergence_rate(seed_curves, ls)
        out = out.assign_coords(pair_l=("pair_l", ls[:-1], {"long_name": "l of the pair (l, 2l)", "units": "1"}))
        out["successive_distance"] = (
            "pair_l",
            rate["delta"],
            {"long_name": f"mean over effective steps of |{RATE_METRIC} at l - at 2l| (seed means)", "units": "1"},
        )
        out["successive_distance_floor"] = (
            "pair_l",
            rate["floor"],
            {"long_name": "the same distance from seed noise alone (split halves / sqrt 2)", "units": "1"},
        )
        for key, name, text in (
            ("exponent", "convergence_exponent", "p of successive_distance ~ l^(-p)"),
            ("lo", "convergence_exponent_ci_low", "2.5% quantile over seed resamples"),
            ("hi", "convergence_exponent_ci_high", "97.5% quantile over seed resamples"),
        ):
            out[name] = ((), rate[key], {"long_name": text, "units": "1"})  # fmt: skip
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
