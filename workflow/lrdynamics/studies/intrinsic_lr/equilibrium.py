"""Equilibrium of normalized nets under SGD+WD: function-space distances, detection, scaling.

Function space (Li, Lyu & Arora 2020): SGD from a random init is a random classifier. The
seeds of one schedule estimate, for each test input, the distribution of its predicted
label; two schedules are compared by the l1 distance of these distributions, averaged over
the test inputs. Its sampling noise floor is the distance between two disjoint halves of the
same schedule's seeds (computed with half the seeds, it overstates the floor of the full set
by about sqrt(2)).

Equilibrium detection (our rule, docs/science.md section 3): a curve has reached
equilibrium at the first evaluation step from which every later value stays within
``tolerance`` (relative) of its final level, the median of the last ``final_fraction`` of the
evaluation points; a curve that only settles inside that final window has not reached it
(NaN). For the scaling experiment the equilibrium level drifts during training, so there the
time to equilibrium is the first step at which runs started on both sides of it (two
``training.init_scale`` values, same seed) agree within ``tolerance`` (``merge_time``). The Fast Equilibrium
Conjecture predicts time-to-equilibrium ~ 1/(eta*lambda): the slope of log time against log
intrinsic LR is fitted by least squares, with a bootstrap confidence interval over runs.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import drop_hyperparameter_dims as _flat
from lrdynamics.engine.runfile import file_attributes, runs_by_experiment, unique_runs
from lrdynamics.studies.intrinsic_lr import REFERENCE

# --- equilibrium predictions (docs/science.md section 3; Li, Lyu & Arora 2020; Wan et al. 2021) ---
#
# For a scale-invariant weight, SGD+WD drives |w| to the balance of the shrinking by WD and
# the growth by the (orthogonal) gradient steps. With sigma2 = |w|^2 |g|^2, the scale-free
# squared gradient, and eta_e = eta/(1-gamma): |w|^4 -> eta_e sigma2 / (2 lambda) (the SDE
# result with eta -> eta/(1-gamma); at gamma = 0 the paper's), so the effective LR
# eta/|w|^2 -> eta sqrt(2 lambda / (eta_e sigma2)), and the angular update per step
# -> sqrt(2 eta lambda / (1 + gamma)) ("spherical motion dynamics"), independent of the noise.


def equilibrium_angular_update(lr, wd, momentum: float = 0.0):
    """sqrt(2 eta lambda / (1 + gamma)): the per-step angle at equilibrium."""
    return (2.0 * lr * wd / (1.0 + momentum)) ** 0.5


def equilibrium_weight_norm(lr, wd, momentum, sigma2):
    """(eta_e sigma2 / (2 lambda))^(1/4), eta_e = eta/(1-gamma), sigma2 = |w|^2 |g|^2."""
    return (lr / (1.0 - momentum) * sigma2 / (2.0 * wd)) ** 0.25


def equilibrium_effective_lr(lr, wd, momentum, sigma2):
    """eta / |w|_eq^2 with the equilibrium norm above."""
    return lr / equilibrium_weight_norm(lr, wd, momentum, sigma2) ** 2


def label_distribution(predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(seed, sample) predicted labels -> (sample, class) frequencies over the seeds."""
    seeds, samples = predictions.shape
    counts = np.zeros((samples, n_classes))
    np.add.at(counts, (np.tile(np.arange(samples), seeds), predictions.ravel()), 1.0)
    return counts / seeds


def l1_distance(a: np.ndarray, b: np.ndarray, n_classes: int) -> float:
    """Mean over test inputs of sum_k |p_a(k) - p_b(k)| (0 = same classifier, 2 = disjoint)."""
    return float(np.abs(label_distribution(a, n_classes) - label_distribution(b, n_classes)).sum(1).mean())


def l1_noise_floor(predictions: np.ndarray, n_classes: int) -> float:
    """l1 distance between two disjoint halves of one schedule's seeds."""
    half = len(predictions) // 2
    if half < 1:
        return float("nan")
    return l1_distance(predictions[:half], predictions[half : 2 * half], n_classes)


def settling_time(steps, deviation, tolerance: float, final_fraction: float) -> float:
    """First step from which ``deviation`` stays <= ``tolerance`` to the end.

    NaN when it settles only inside the last ``final_fraction`` of the points (too late to
    tell settling from a passing crossing) or never.
    """
    steps, deviation = np.asarray(steps, dtype=float), np.asarray(deviation, dtype=float)
    n_final = max(1, int(round(final_fraction * len(deviation))))
    outside = ~(deviation <= tolerance)  # NaN counts as outside
    if not outside.any():
        return float(steps[0])
    first_inside = int(np.flatnonzero(outside)[-1]) + 1
    if first_inside >= len(deviation) - n_final:
        return float("nan")
    return float(steps[first_inside])


def time_to_equilibrium(steps, values, tolerance: float, final_fraction: float) -> float:
    """First step from which the curve stays within ``tolerance`` of its final level (NaN: never)."""
    values = np.asarray(values, dtype=float)
    n_final = max(1, int(round(final_fraction * len(values))))
    final = np.median(values[-n_final:])
    return settling_time(steps, np.abs(values / final - 1.0), tolerance, final_fraction)


def merge_time(steps, a, b, tolerance: float, final_fraction: float) -> float:
    """First step at which two runs started on opposite sides of equilibrium agree within
    ``tolerance`` (relative), provided they still agree at the end (median gap over the last
    ``final_fraction`` of the points); NaN otherwise.

    The time to equilibrium of the scaling experiment. The starts' gap begins large (16x for
    init scales 4 and 1/4) and closes by relaxation; once it is within the tolerance, what is
    left is fluctuation around a shared equilibrium, so the first meeting is the relaxation
    time. A single curve's settling (``time_to_equilibrium``) would instead be dominated by
    the slow drift of the equilibrium level as the loss falls, and a "stays within for good"
    rule by late noise excursions (both seen at demo scale). The end condition rejects curves
    that merely cross on their way to different levels.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    gap = np.abs(a / b - 1.0)
    n_final = max(1, int(round(final_fraction * len(gap))))
    inside = np.flatnonzero(gap <= tolerance)
    if not len(inside) or not np.median(gap[-n_final:]) <= tolerance:
        return float("nan")
    return float(np.asarray(steps, dtype=float)[inside[0]])


def fit_loglog_slope(x, y, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Least-squares slope of log y on log x, with a bootstrap CI over the points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    if len(np.unique(lx)) < 2:
        return {
            "slope": np.nan,
            "intercept": np.nan,
            "slope_ci_low": np.nan,
            "slope_ci_high": np.nan,
            "n": int(ok.sum()),
        }
    slope, intercept = np.polyfit(lx, ly, 1)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(lx), len(lx))
        if len(np.unique(lx[idx])) >= 2:
            boots.append(np.polyfit(lx[idx], ly[idx], 1)[0])
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return {"slope": slope, "intercept": intercept, "slope_ci_low": lo, "slope_ci_high": hi, "n": int(ok.sum())}


def _run(ds: xr.Dataset) -> dict:
    return json.loads(ds.attrs["config_json"])


def run_summary(ds: xr.Dataset, metric: str, tolerance: float, final_fraction: float) -> dict:
    """Per-run equilibrium quantities: time to equilibrium of ``metric``, measured vs predicted."""
    run = _run(ds)
    flat = _flat(ds)
    steps = flat.step.values
    lr, wd = flat.learning_rate.values[-1], flat.weight_decay.values[-1]
    momentum = run["optimizer"]["momentum"]
    n_final = max(1, int(round(final_fraction * len(steps))))
    late = slice(len(steps) - n_final, None)
    sigma2 = float(np.nanmean((flat.total_weight_norm.values * flat.grad_norm.values)[late] ** 2))
    t_eq = time_to_equilibrium(steps, flat[metric].values, tolerance, final_fraction)
    # Steps spent at the final (lr, wd): relaxation takes O(1/intrinsic LR) steps, and a curve
    # that moves too slowly to leave the tolerance band has not "settled" in any useful sense.
    lr_all, wd_all = flat.learning_rate.values, flat.weight_decay.values
    changed = np.flatnonzero((lr_all != lr) | (wd_all != wd))
    since = steps[-1] - (steps[changed[-1] + 1] if len(changed) else steps[0])
    lr_e = lr * wd / (1 - momentum)
    reached = bool(np.isfinite(t_eq)) and lr_e > 0 and since >= 1.0 / lr_e
    return {
        "experiment": run["experiment"],
        "run": run["run"],
        "seed": run["training"]["seed"],
        "intrinsic_lr": lr_e,
        "time_to_equilibrium": t_eq,
        "reached_equilibrium": reached,
        "angular_update_measured": float(np.nanmean(flat.total_angular_update.values[late])),
        "angular_update_predicted": equilibrium_angular_update(lr, wd, momentum) if wd > 0 else np.nan,
        "weight_norm_measured": float(np.nanmean(flat.total_weight_norm.values[late])),
        "weight_norm_predicted": equilibrium_weight_norm(lr, wd, momentum, sigma2) if wd > 0 else np.nan,
        "effective_lr_measured": float(np.nanmean(flat.total_effective_lr.values[late])),
        "effective_lr_predicted": equilibrium_effective_lr(lr, wd, momentum, sigma2) if wd > 0 else np.nan,
    }


def function_space_distances(groups: dict[str, list[xr.Dataset]], n_classes: int) -> xr.Dataset:
    """l1 distance of each group's label distributions to the first group's, per step."""
    preds = {}
    for name, runs in groups.items():
        arrays = [r["test_predictions"].values.reshape(r.sizes["step"], -1) for r in runs]
        preds[name] = np.stack(arrays, axis=1)  # (step, seed, sample)
    names = list(groups)
    reference = preds[names[0]]
    steps = groups[names[0]][0].step.values
    epoch = groups[names[0]][0].epoch.values
    dist = np.array([[l1_distance(preds[n][t], reference[t], n_classes) for t in range(len(steps))] for n in names])
    floor = np.array([[l1_noise_floor(preds[n][t], n_classes) for t in range(len(steps))] for n in names])
    return xr.Dataset(
        {
            "l1_distance_to_reference": (
                ("schedule", "step"),
                dist,
                {"long_name": f"mean l1 distance of predicted-label distributions to {names[0]}", "units": "1"},
            ),
            "l1_noise_floor": (
                ("schedule", "step"),
                floor,
                {"long_name": "l1 distance between two disjoint halves of the schedule's seeds", "units": "1"},
            ),
        },
        coords={"schedule": names, "step": steps, "epoch": ("step", epoch)},
    )


def scaling_merge_times(runs: list[xr.Dataset], metric: str, tolerance: float, final_fraction: float):
    """Merge time of the two starts of each (intrinsic LR, seed): (sorted LRs, {lr_e: [times]})."""
    groups: dict[tuple, dict[float, np.ndarray]] = {}
    steps = None
    for ds in runs:
        run = _run(ds)
        flat = _flat(ds)
        lr, wd = flat.learning_rate.values[-1], flat.weight_decay.values[-1]
        key = (float(lr * wd / (1 - run["optimizer"]["momentum"])), run["training"]["seed"])
        groups.setdefault(key, {})[run["training"]["init_scale"]] = flat[metric].values
        steps = flat.step.values
    bad = {k: sorted(v) for k, v in groups.items() if len(v) != 2}
    if bad:
        raise ValueError(
            f"the scaling experiment needs exactly two training.init_scale values per intrinsic LR and seed; got {bad}"
        )
    per_seed: dict[float, list[float]] = {}
    for (lr_e, _), starts in sorted(groups.items()):
        a, b = (starts[k] for k in sorted(starts))
        per_seed.setdefault(lr_e, []).append(merge_time(steps, a, b, tolerance, final_fraction))
    return sorted(per_seed), per_seed


def _stat(times, fn):
    times = np.asarray(times, dtype=float)
    return fn(times) if np.isfinite(times).any() else np.nan


def run_summaries(runs: list[xr.Dataset], metric: str, tolerance: float, final_fraction: float) -> xr.Dataset:
    """``run_summary`` of each run, along ``run_id`` (``<experiment>/<run>``)."""
    per_run = [run_summary(ds, metric, tolerance, final_fraction) for ds in runs]
    run_vars = {
        key: ("run_id", np.array([s[key] for s in per_run])) for key in per_run[0] if key not in ("experiment", "run")
    }
    out = xr.Dataset(
        {k: v for k, v in run_vars.items() if k not in ("seed", "intrinsic_lr")},
        coords={
            "run_id": [f"{s['experiment']}/{s['run']}" for s in per_run],
            "seed": run_vars["seed"],
            "run_intrinsic_lr": run_vars["intrinsic_lr"],
        },
    )
    for name, long_name, units in [
        ("time_to_equilibrium", f"first step from which {metric} stays within {tolerance:.0%} of its final level", "1"),
        (
            "reached_equilibrium",
            "time_to_equilibrium is finite and >= 1/intrinsic LR steps were spent at the final LR and WD",
            "1",
        ),
        ("angular_update_measured", "mean angular update per step over the last evaluations", "rad"),
        ("angular_update_predicted", "sqrt(2 eta lambda / (1 + gamma))", "rad"),
        ("weight_norm_measured", "mean total weight norm over the last evaluations", "1"),
        ("weight_norm_predicted", "(eta/(1-gamma) sigma2 / (2 lambda))^(1/4), sigma2 = |w|^2|g|^2 measured", "1"),
        ("effective_lr_measured", "mean effective LR over the last evaluations", "1"),
        ("effective_lr_predicted", "eta / predicted norm^2", "1"),
    ]:
        out[name].attrs.update(long_name=long_name, units=units)
    return out


def time_scaling(scaling: list[xr.Dataset], metric: str, tolerance: float, final_fraction: float) -> xr.Dataset:
    """Time to equilibrium per intrinsic LR (mean, min and max over seeds of the starts'
    merge time) and the fitted log-log slope with its bootstrap CI."""
    lrs, per_seed = scaling_merge_times(scaling, metric, tolerance, final_fraction)
    times = [per_seed[x] for x in lrs]
    fit = fit_loglog_slope([x for x in lrs for _ in per_seed[x]], [t for x in lrs for t in per_seed[x]])
    out = xr.Dataset(
        {
            "time_to_equilibrium_mean": ("intrinsic_lr", [_stat(t, np.nanmean) for t in times]),
            "time_to_equilibrium_lower": ("intrinsic_lr", [_stat(t, np.nanmin) for t in times]),
            "time_to_equilibrium_upper": ("intrinsic_lr", [_stat(t, np.nanmax) for t in times]),
            "seeds_reached": ("intrinsic_lr", [int(np.isfinite(t).sum()) for t in times]),
        },
        coords={"intrinsic_lr": lrs},
    )
    for key in ("slope", "slope_ci_low", "slope_ci_high", "intercept"):
        out[key] = fit[key]
    for name, long_name in [
        ("slope", "fitted slope of log time_to_equilibrium on log intrinsic LR"),
        ("slope_ci_low", "95% bootstrap CI of the slope, low end"),
        ("slope_ci_high", "95% bootstrap CI of the slope, high end"),
        ("intercept", "fitted intercept (log steps)"),
        (
            "time_to_equilibrium_mean",
            f"mean over seeds of the first step at which the two starts' {metric} agree within {tolerance:.0%}",
        ),
        ("time_to_equilibrium_lower", "earliest seed's time to equilibrium"),
        ("time_to_equilibrium_upper", "latest seed's time to equilibrium"),
        ("seeds_reached", "seeds whose two starts met"),
        ("intrinsic_lr", "intrinsic LR eta*lambda/(1-gamma)"),
    ]:
        out[name].attrs.update(long_name=long_name, units="1")
    return out


def equilibrium_analysis(
    histories: list[xr.Dataset],
    scaling: list[xr.Dataset],
    angular: list[xr.Dataset],
    *,
    metric: str,
    tolerance: float,
    final_fraction: float,
) -> xr.Dataset:
    """results/analysis/equilibrium.nc: distances, times to equilibrium, the fitted slope.

    ``histories``: the runs of the schedules compared in function space (one experiment
    each, the first the reference); ``scaling``: the runs of the time-scaling experiment;
    ``angular``: further runs whose equilibrium quantities are summarized (every run of the
    three lists is summarized once).
    """
    parts = []
    if histories:
        n_classes = 1 + max(int(r["test_predictions"].max()) for r in histories)
        parts.append(function_space_distances(runs_by_experiment(histories), max(n_classes, 10)))
    parts.append(run_summaries(unique_runs(histories, scaling, angular), metric, tolerance, final_fraction))
    if scaling:
        parts.append(time_scaling(scaling, metric, tolerance, final_fraction))
    # "override" keeps each variable's own attributes (each comes from one part only)
    out = xr.merge(parts, compat="no_conflicts", join="outer", combine_attrs="override")
    out.attrs.update(
        file_attributes("Equilibrium of normalized nets under SGD with weight decay", REFERENCE, __name__),
        equilibrium_metric=metric,
        equilibrium_tolerance=tolerance,
        equilibrium_final_fraction=final_fraction,
    )
    return out


def summary(analysis: xr.Dataset) -> list[str]:
    """The fitted slope, and each run's measured/predicted angular update."""
    lines = []
    if "slope" in analysis:
        lines.append(
            f"slope {float(analysis.slope):.3f} (95% CI {float(analysis.slope_ci_low):.3f} .. "
            f"{float(analysis.slope_ci_high):.3f}); predicted -1"
        )
    ratio = analysis.angular_update_measured / analysis.angular_update_predicted
    for run_id, r, reached in zip(analysis.run_id.values, ratio.values, analysis.reached_equilibrium.values):
        lines.append(f"{run_id}: angular update measured/predicted {r:.3f} (equilibrium reached: {bool(reached)})")
    return lines
