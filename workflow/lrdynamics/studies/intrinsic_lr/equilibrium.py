"""Equilibrium of normalized nets under SGD+WD: function-space distances, detection, scaling.

Function space (Li, Lyu & Arora 2020): SGD from a random init is a random classifier. The
seeds of one schedule (a seed ensemble) estimate, for each test input, the distribution of
its predicted label; two ensembles are compared by the l1 distance of these distributions,
averaged over the test inputs.

The time to equilibrium in function space (docs/science.md section 3, the rule written
down before the ensembles ran): each ensemble is split into the same two halves of seeds;
the distance ``D`` is taken between disjoint halves of the two ensembles (a seed's runs
share their initial direction and batches, so they are never compared with each other),
the floor ``F`` between the two halves of each ensemble, so that ``E D = E F`` at
equilibrium exactly; the time is the first evaluation after the peak of ``D - F`` with
``D <= F``, its uncertainty a bootstrap over seeds within the halves. The Fast Equilibrium
Conjecture predicts time ~ 1/(eta*lambda): the slope of log time on log intrinsic LR.

The norm's relaxation, a second and different measure (the SDE predicts it directly):
runs started on both sides of the equilibrium norm (``training.init_scale``), same seed,
meet when their ``metric`` agrees within ``tolerance`` (``merge_time``); a single curve's
settling is ``time_to_equilibrium``. Windows "at the end" are the last ``final_fraction``
of the steps.

Predictions at equilibrium (per run, or per member of an ensemble): the angular update
``sqrt(2 eta lambda/(1+gamma))``; the norm from the measured minibatch noise trace, the
SDE's prediction from independent inputs; the momentum-buffer identity (a consistency
check); the older full-gradient estimate, kept and labelled.
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import drop_hyperparameter_dims as _flat
from lrdynamics.engine.runfile import file_attributes, runs_by_experiment, unique_runs
from lrdynamics.studies.intrinsic_lr import REFERENCE

# --- equilibrium predictions (docs/science.md section 3; Li, Lyu & Arora 2020; Wan et al. 2021) ---
#
# For a scale-invariant weight, SGD+WD drives |w| to the balance of the shrinking by WD and
# the growth by the (orthogonal) steps. In the SDE only the noise grows the norm: with
# sigma2 = |w|^2 tr(Sigma_B) (scale-free) and eta_e = eta/(1-gamma), |w|^4 -> eta_e sigma2 /
# (2 lambda), so the effective LR eta/|w|^2 -> eta sqrt(2 lambda / (eta_e sigma2)). The
# angular update per step -> sqrt(2 eta lambda / (1 + gamma)) ("spherical motion dynamics"),
# whatever the noise. With PyTorch's momentum buffer v the stationary balance is exactly
# E|w|^2 = eta (1 + gamma) E|v|^2 / (2 lambda): an identity, a consistency check.


def equilibrium_angular_update(lr, wd, momentum: float = 0.0):
    """sqrt(2 eta lambda / (1 + gamma)): the per-step angle at equilibrium."""
    return (2.0 * lr * wd / (1.0 + momentum)) ** 0.5


def equilibrium_weight_norm(lr, wd, momentum, sigma2):
    """(eta_e sigma2 / (2 lambda))^(1/4), eta_e = eta/(1-gamma); sigma2 = |w|^2 tr(Sigma_B)
    gives the SDE's prediction (sigma2 = |w|^2 |g_B|^2, noise plus signal, the older one)."""
    return (lr / (1.0 - momentum) * sigma2 / (2.0 * wd)) ** 0.25


def buffer_identity_weight_norm(lr, wd, momentum, buffer_sq):
    """sqrt(eta (1 + gamma) E|v|^2 / (2 lambda)): the norm the momentum buffer's stationary
    balance implies (exact for PyTorch SGD on scale-invariant weights at stationarity)."""
    return (lr * (1.0 + momentum) * buffer_sq / (2.0 * wd)) ** 0.5


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


# --- the function-space rule (docs/science.md section 3) --------------------------------------


def half_weights(n_seeds: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(1 + n_boot, 2, n_seeds // 2) seed weights of the two halves: row 0 the halves as they
    are (every seed once), then ``n_boot`` resamples, each half drawn with replacement from
    its own seeds (the halves stay disjoint)."""
    half = n_seeds // 2
    if half < 1:
        raise ValueError(f"a function-space distance needs an ensemble of >= 2 seeds, got {n_seeds}")
    draws = rng.multinomial(half, np.full(half, 1.0 / half), size=(n_boot, 2)).astype(np.float32)
    return np.concatenate([np.ones((1, 2, half), np.float32), draws])


def _one_hot(predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(seed, ...) labels -> (seed, ... * n_classes) float32 indicators."""
    out = np.zeros((*predictions.shape, n_classes), np.float32)
    np.put_along_axis(out, predictions[..., None].astype(np.int64), 1.0, axis=-1)
    return out.reshape(len(predictions), -1)


def half_distances(a: np.ndarray, b: np.ndarray, n_classes: int, weights: np.ndarray, block_bytes: float = 2**27):
    """Disjoint-half distance D and each ensemble's split-half floor, per weighting and step.

    ``a``, ``b``: (seed, step, sample) predicted labels of two ensembles of the same seeds'
    count; ``weights``: ``half_weights``, applied to both (H1 = the first half of the seeds,
    H2 = the next). Returns D = [l1(a_H1, b_H2) + l1(a_H2, b_H1)]/2 and the floors
    l1(a_H1, a_H2) and l1(b_H1, b_H2), each (weighting, step); the matched floor F is their
    mean (``matched_floor``). The test inputs go in blocks of about
    ``block_bytes`` of indicators, so 500 seeds x 10,000 inputs fit in memory.
    """
    if a.shape != b.shape:
        raise ValueError(f"the two ensembles differ in shape: {a.shape} vs {b.shape}")
    seeds, steps, samples = a.shape
    half = seeds // 2
    halves = (slice(0, half), slice(half, 2 * half))
    w = [weights[:, h] / half for h in range(2)]  # (R, half) each, rows sum to 1
    dist, floor_a, floor_b = (np.zeros((len(weights), steps)) for _ in range(3))
    # inputs per block: the indicators (seeds x steps x inputs x classes) and each half's
    # distributions (weightings x steps x inputs x classes) within the budget
    block = max(1, int(block_bytes // (4 * max(seeds, 8 * len(weights)) * steps * n_classes)))
    for start in range(0, samples, block):
        cols = slice(start, min(samples, start + block))
        p = {}
        for name, x in (("a", a), ("b", b)):
            hot = _one_hot(x[:, :, cols], n_classes)
            for h in range(2):  # (R, step, inputs, class)
                p[name, h] = (w[h] @ hot[halves[h]]).reshape(len(weights), steps, -1, n_classes)

        def l1(u, v):
            return np.abs(u - v).sum(-1).sum(-1)

        dist += (l1(p["a", 0], p["b", 1]) + l1(p["a", 1], p["b", 0])) / 2
        floor_a += l1(p["a", 0], p["a", 1])
        floor_b += l1(p["b", 0], p["b", 1])
    return dist / samples, floor_a / samples, floor_b / samples


def matched_floor(floor_a: np.ndarray, floor_b: np.ndarray) -> np.ndarray:
    """F: the mean of two ensembles' split-half floors, what D equals at equilibrium."""
    return (floor_a + floor_b) / 2


def first_crossing_after_peak(steps, distance, floor) -> tuple[float, float]:
    """(time, D/F at the peak): the first step after the peak of D - F at which D <= F (NaN:
    none), and how far apart the ensembles were at the peak."""
    steps, distance, floor = (np.asarray(v, dtype=float) for v in (steps, distance, floor))
    excess = distance - floor
    if not np.isfinite(excess).any():
        return math.nan, math.nan
    peak = int(np.nanargmax(excess))
    below = np.flatnonzero(distance[peak + 1 :] <= floor[peak + 1 :])
    time = float(steps[peak + 1 + below[0]]) if len(below) else math.nan
    return time, float(distance[peak] / floor[peak]) if floor[peak] > 0 else math.inf


def _crossings(steps, dist, floor) -> tuple[np.ndarray, float]:
    """Each weighting's first crossing after the peak; and the peak ratio of row 0."""
    times = np.array([first_crossing_after_peak(steps, d, f)[0] for d, f in zip(dist, floor)])
    return times, first_crossing_after_peak(steps, dist[0], floor[0])[1]


def _interval(times: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the resampled times; +inf at the top when too many resamples
    never crossed (the time is then unbounded above)."""
    times = np.asarray(times, dtype=float)
    if not len(times) or np.isnan(times).mean() > (1 - level) / 2:
        low = np.nanquantile(times, (1 - level) / 2) if np.isfinite(times).any() else math.nan
        return float(low), math.inf
    lo, hi = np.quantile(times, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _loglog_fit(x, y) -> tuple[float, float]:
    """(slope, intercept) of log y on log x over the finite, positive points (NaN: < 2 x values)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if len(np.unique(x[ok])) < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(intercept)


def ensemble_predictions(runs: list[xr.Dataset]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, epochs, (seed, step, sample) labels) of one ensemble's members, by seed."""
    runs = sorted(runs, key=lambda r: _run(r)["training"]["seed"])
    missing = [_run(r)["run"] for r in runs if "test_predictions" not in r]
    if missing:
        raise ValueError(f"runs {missing} stored no test predictions (evaluation.prediction_samples)")
    steps = runs[0].step.values
    if any(not np.array_equal(r.step.values, steps) for r in runs):
        raise ValueError("an ensemble's members were evaluated at different steps")
    labels = np.stack([r["test_predictions"].values.reshape(len(steps), -1) for r in runs])
    return steps, runs[0].epoch.values, labels


# --- equilibrium detection of one curve, and the norm's relaxation --------------------------------


def final_window(steps, final_fraction: float) -> np.ndarray:
    """Mask of the evaluations in the last ``final_fraction`` of the steps (at least the last)."""
    steps = np.asarray(steps, dtype=float)
    mask = steps >= steps[-1] - final_fraction * (steps[-1] - steps[0])
    mask[-1] = True
    return mask


def settling_time(steps, deviation, tolerance: float, final_fraction: float) -> float:
    """First step from which ``deviation`` stays <= ``tolerance`` to the end.

    NaN when it settles only inside the last ``final_fraction`` of the steps (too late to
    tell settling from a passing crossing) or never.
    """
    steps, deviation = np.asarray(steps, dtype=float), np.asarray(deviation, dtype=float)
    first_final = int(np.flatnonzero(final_window(steps, final_fraction))[0])
    outside = ~(deviation <= tolerance)  # NaN counts as outside
    if not outside.any():
        return float(steps[0])
    first_inside = int(np.flatnonzero(outside)[-1]) + 1
    if first_inside >= first_final:
        return float("nan")
    return float(steps[first_inside])


def time_to_equilibrium(steps, values, tolerance: float, final_fraction: float) -> float:
    """First step from which the curve stays within ``tolerance`` of its final level (NaN: never)."""
    values = np.asarray(values, dtype=float)
    final = np.median(values[final_window(steps, final_fraction)])
    return settling_time(steps, np.abs(values / final - 1.0), tolerance, final_fraction)


def merge_time(steps, a, b, tolerance: float, final_fraction: float) -> float:
    """First step at which two runs started on opposite sides of equilibrium agree within
    ``tolerance`` (relative), provided they still agree at the end (median gap over the last
    ``final_fraction`` of the steps); NaN otherwise.

    The norm-relaxation time of the scaling experiment. The starts' gap begins large (16x
    for init scales 4 and 1/4) and closes by relaxation; once it is within the tolerance,
    what is left is fluctuation around a shared equilibrium, so the first meeting is the
    relaxation time. A single curve's settling (``time_to_equilibrium``) would instead be
    dominated by the slow drift of the equilibrium level as the loss falls, and a "stays
    within for good" rule by late noise excursions (both seen at demo scale). The end
    condition rejects curves that merely cross on their way to different levels.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    gap = np.abs(a / b - 1.0)
    inside = np.flatnonzero(gap <= tolerance)
    if not len(inside) or not np.median(gap[final_window(steps, final_fraction)]) <= tolerance:
        return float("nan")
    return float(np.asarray(steps, dtype=float)[inside[0]])


def fit_loglog_slope(x, y, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Least-squares slope of log y on log x, with a bootstrap CI over the points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    slope, intercept = _loglog_fit(x, y)
    if not np.isfinite(slope):
        return {"slope": np.nan, "intercept": np.nan, "slope_ci_low": np.nan, "slope_ci_high": np.nan,
                "n": int(ok.sum())}  # fmt: skip
    rng = np.random.default_rng(seed)
    boots = [_loglog_fit(x[idx], y[idx])[0] for idx in (rng.integers(0, len(x), len(x)) for _ in range(n_boot))]
    lo, hi = np.nanquantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return {"slope": slope, "intercept": intercept, "slope_ci_low": lo, "slope_ci_high": hi, "n": int(ok.sum())}


def _run(ds: xr.Dataset) -> dict:
    return json.loads(ds.attrs["config_json"])


def final_phase(ds: xr.Dataset) -> tuple[float, float, float, int]:
    """A run's final LR, WD and intrinsic LR eta*lambda/(1-gamma), and the first step from
    which its LR and WD are the final ones (read from the run's own record)."""
    steps = ds.step.values
    lr, wd = (ds[name].values.reshape(len(steps)) for name in ("learning_rate", "weight_decay"))
    changed = np.flatnonzero((lr != lr[-1]) | (wd != wd[-1]))
    start = int(steps[changed[-1] + 1]) if len(changed) else int(steps[0])
    return float(lr[-1]), float(wd[-1]), float(lr[-1] * wd[-1] / (1 - _run(ds)["optimizer"]["momentum"])), start


# The run variables a run's summary reads.
SUMMARY_INPUTS = (
    "learning_rate",
    "weight_decay",
    "total_weight_norm",
    "grad_norm",
    "total_angular_update",
    "total_effective_lr",
    "momentum_buffer_norm",
    "noise_weight_norm",
    "batch_gradient_noise",
)


def run_summary(ds: xr.Dataset, metric: str, tolerance: float, final_fraction: float) -> dict:
    """Per-run equilibrium quantities: time to equilibrium of ``metric``, measured vs predicted."""
    run = _run(ds)
    flat = _flat(ds[[v for v in (*SUMMARY_INPUTS, metric) if v in ds]])  # (not the stored predictions)
    steps = flat.step.values
    lr, wd, lr_e, start = final_phase(flat)
    momentum = run["optimizer"]["momentum"]
    late = final_window(steps, final_fraction)
    t_eq = time_to_equilibrium(steps, flat[metric].values, tolerance, final_fraction)
    # Steps spent at the final (lr, wd): relaxation takes O(1/intrinsic LR) steps, and a curve
    # that moves too slowly to leave the tolerance band has not "settled" in any useful sense.
    since = steps[-1] - start
    reached = bool(np.isfinite(t_eq)) and lr_e > 0 and since >= 1.0 / lr_e
    norm = flat.total_weight_norm.values
    full_sigma2 = float(np.nanmean((norm * flat.grad_norm.values)[late] ** 2))
    noise_sigma2 = math.nan
    if "noise_weight_norm" in flat:  # the noise-trace inputs, over the same final window
        late_noise = flat.noise_step.values >= steps[late][0]
        noise_sigma2 = float(np.nanmean((flat.noise_weight_norm.values ** 2 * flat.batch_gradient_noise.values)
                                        [late_noise])) if late_noise.any() else math.nan  # fmt: skip
    buffer_sq = float(np.nanmean(flat.momentum_buffer_norm.values[late] ** 2)) if "momentum_buffer_norm" in flat \
        else math.nan  # fmt: skip
    predicted = equilibrium_weight_norm(lr, wd, momentum, noise_sigma2) if wd > 0 else math.nan
    return {
        "experiment": run["experiment"],
        "run": run["run"],
        "seed": run["training"]["seed"],
        "intrinsic_lr": lr_e,
        "time_to_equilibrium": t_eq,
        "reached_equilibrium": reached,
        "angular_update_measured": float(np.nanmean(flat.total_angular_update.values[late])),
        "angular_update_predicted": equilibrium_angular_update(lr, wd, momentum) if wd > 0 else np.nan,
        "weight_norm_measured": float(np.nanmean(norm[late])),
        "weight_norm_predicted": predicted,
        "weight_norm_predicted_full_gradient": equilibrium_weight_norm(lr, wd, momentum, full_sigma2)
        if wd > 0
        else np.nan,  # fmt: skip
        "weight_norm_buffer_identity": buffer_identity_weight_norm(lr, wd, momentum, buffer_sq)
        if wd > 0 and momentum > 0
        else np.nan,  # fmt: skip
        "effective_lr_measured": float(np.nanmean(flat.total_effective_lr.values[late])),
        "effective_lr_predicted": lr / predicted**2 if wd > 0 else np.nan,
    }


RUN_SUMMARY_ATTRS = {
    "reached_equilibrium": "time_to_equilibrium is finite and >= 1/intrinsic LR steps were spent at the final "
    "LR and WD",
    "angular_update_measured": "mean angular update per step over the final window",
    "angular_update_predicted": "sqrt(2 eta lambda / (1 + gamma))",
    "weight_norm_measured": "mean total weight norm over the final window",
    "weight_norm_predicted": "SDE prediction from the noise trace: (eta/(1-gamma) |w|^2 tr(Sigma_B) / "
    "(2 lambda))^(1/4), |w|^2 tr(Sigma_B) measured over the final window (gradient_noise)",
    "weight_norm_predicted_full_gradient": "older estimate, biased with momentum: (eta/(1-gamma) |w|^2 |g_B|^2 / "
    "(2 lambda))^(1/4), |g_B| the last update's minibatch gradient",
    "weight_norm_buffer_identity": "consistency check, not a prediction: sqrt(eta (1+gamma) E|v|^2 / "
    "(2 lambda)), v the momentum buffer (exact at stationarity)",
    "effective_lr_measured": "mean effective LR over the final window",
    "effective_lr_predicted": "eta / weight_norm_predicted^2",
}


def run_summaries(runs: list[xr.Dataset], metric: str, tolerance: float, final_fraction: float) -> xr.Dataset:
    """``run_summary`` of each run (each member of an ensemble), along ``run_id``
    (``<experiment>/<run>``, the run of a member naming its seed)."""
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
    attrs = {"time_to_equilibrium": f"first step from which {metric} stays within {tolerance:.0%} of its final level",
             **RUN_SUMMARY_ATTRS}  # fmt: skip
    for name, long_name in attrs.items():
        out[name].attrs.update(long_name=long_name, units="rad" if name.startswith("angular") else "1")
    return out


# --- the three function-space analyses ----------------------------------------------------------


def function_space_distances(groups: dict[str, list[xr.Dataset]], n_classes: int, n_boot: int = 200,
                             seed: int = 0, phases: list[tuple] | None = None,
                             from_switch: bool = False) -> xr.Dataset:  # fmt: skip
    """Histories against the first (the reference): per step, the disjoint-half distance and
    each schedule's split-half floor; per schedule, the time to equilibrium by the rule.

    ``phases``: per schedule, ``final_phase``'s (lr, wd, intrinsic LR, switch step), where
    the LR and WD alone do not say when the schedules become equivalent (Exp LR);
    ``from_switch``: the peak and the crossing are sought from the switch on only (runs that
    are the same before it, where a peak could only be noise)."""
    names = list(groups)
    preds = {n: ensemble_predictions(runs) for n, runs in groups.items()}
    steps, epoch, reference = preds[names[0]]
    if any(not np.array_equal(preds[n][0], steps) for n in names):
        raise ValueError(f"the histories {names} were evaluated at different steps")
    rng = np.random.default_rng(seed)
    dist, floor, own_floor = (np.full((len(names), len(steps)), np.nan) for _ in range(3))
    t_eq, lo, hi, ratio = (np.full(len(names), np.nan) for _ in range(4))
    phases = phases or [final_phase(groups[n][0]) for n in names]
    switch = np.array([phase[3] for phase in phases])
    lr_e = np.array([phase[2] for phase in phases])
    for i, name in enumerate(names):
        weights = half_weights(len(preds[name][2]), n_boot if i else 0, rng)
        d, floor_s, floor_ref = half_distances(preds[name][2], reference, n_classes, weights)
        f = matched_floor(floor_s, floor_ref)
        dist[i], floor[i], own_floor[i] = d[0], f[0], floor_s[0]
        if i:
            keep = steps >= switch[i] if from_switch else np.ones(len(steps), bool)
            times, ratio[i] = _crossings(steps[keep], d[:, keep], f[:, keep])
            t_eq[i], (lo[i], hi[i]) = times[0], _interval(times[1:])
    after = np.searchsorted(steps, switch)  # the first evaluation at or after the switch
    at_switch = np.array([dist[i, min(a, len(steps) - 1)] for i, a in enumerate(after)])
    units = (t_eq - switch) * lr_e
    shared = steps >= switch.max()  # every history at the shared LR and WD
    out = xr.Dataset(
        {
            "l1_distance_to_reference": (("schedule", "step"), dist),
            "l1_noise_floor": (("schedule", "step"), own_floor),
            "l1_matched_floor": (("schedule", "step"), floor),
            "history_equilibrium_step": ("schedule", t_eq),
            "history_equilibrium_step_ci_low": ("schedule", lo),
            "history_equilibrium_step_ci_high": ("schedule", hi),
            "history_peak_ratio": ("schedule", ratio),
            "history_switch_step": ("schedule", switch),
            "history_intrinsic_lr": ("schedule", lr_e),
            "history_equilibrium_relaxation_times": ("schedule", units),
            "l1_distance_after_switch": ("schedule", at_switch),
            "l1_noise_floor_after_switch": ("schedule", own_floor[:, shared].max(1)),
            "ensemble_seeds": ("schedule", [len(preds[n][2]) for n in names]),
        },
        coords={"schedule": names, "step": steps, "epoch": ("step", epoch)},
    )
    for name, long_name in [
        (
            "l1_distance_to_reference",
            f"l1 distance of label distributions to {names[0]}, between disjoint halves of "
            "seeds: [l1(s_H1, ref_H2) + l1(s_H2, ref_H1)]/2 (for the reference itself: its split-half floor)",
        ),
        ("l1_noise_floor", "l1 distance between the two halves of the schedule's own seeds (K/2 against K/2)"),
        (
            "l1_matched_floor",
            "floor the distance is compared with: mean of the schedule's and the reference's split-half floors",
        ),
        (
            "history_equilibrium_step",
            "first step after the peak of distance - matched floor at which the distance <= the floor (NaN: never)",
        ),
        ("history_equilibrium_step_ci_low", "2.5% quantile over bootstrap resamples of seeds within halves"),
        ("history_equilibrium_step_ci_high", "97.5% quantile (inf: > 2.5% of resamples never crossed)"),
        ("history_peak_ratio", "distance / matched floor at the peak (near 1: the ensembles never parted)"),
        ("history_switch_step", "first step from which the schedule's LR and WD are its final ones"),
        ("history_intrinsic_lr", "the schedule's final intrinsic LR (its relaxation time is the inverse)"),
        ("history_equilibrium_relaxation_times", "(equilibrium step - switch step) x final intrinsic LR"),
        ("l1_distance_after_switch", "l1_distance_to_reference at the first evaluation at or after the switch"),
        ("ensemble_seeds", "seeds in the schedule's ensemble"),
        ("l1_noise_floor_after_switch", "largest l1_noise_floor from the last history's switch on"),
    ]:
        out[name].attrs.update(long_name=long_name, units="1")
    return out


def mixing_vs_equilibrium(runs: list[xr.Dataset], n_classes: int) -> xr.Dataset | None:
    """The reference history's weights keep moving while its classifier distribution stays:
    from the anchor evaluation (``evaluation.direction_anchor``) on, the members' distance
    between unit weight directions at T and T+D, against the function-space distance between
    the ensemble at T and at T+D (disjoint halves) and its floor. None: no anchor recorded."""
    if "direction_distance" not in runs[0]:
        return None
    steps, epoch, labels = ensemble_predictions(runs)
    members = sorted(runs, key=lambda r: _run(r)["training"]["seed"])
    gaps = np.stack([_flat(r).direction_distance.values for r in members])
    anchor = int(np.flatnonzero(np.isfinite(gaps[0]))[0])
    later = np.arange(anchor, len(steps))
    at_anchor = np.repeat(labels[:, anchor : anchor + 1], len(later), axis=1)
    weights = np.ones((1, 2, len(labels) // 2), np.float32)
    dist, *floors = half_distances(at_anchor, labels[:, later], n_classes, weights)
    floor = matched_floor(*floors)
    return xr.Dataset(
        {
            "mixing_direction_distance": (
                "mixing_step",
                np.nanmean(gaps[:, later], 0),
                {
                    "long_name": "mean over the reference's seeds of |w(T+D)/|w(T+D)| - "
                    "w(T)/|w(T)||, T the anchor evaluation",
                    "units": "1",
                },
            ),
            "mixing_direction_distance_low": (
                "mixing_step",
                np.nanquantile(gaps[:, later], 0.1, 0),
                {"long_name": "10% quantile over seeds", "units": "1"},
            ),
            "mixing_direction_distance_high": (
                "mixing_step",
                np.nanquantile(gaps[:, later], 0.9, 0),
                {"long_name": "90% quantile over seeds", "units": "1"},
            ),
            "mixing_function_distance": (
                "mixing_step",
                dist[0],
                {
                    "long_name": "l1 distance of label distributions between T and T+D, disjoint halves of seeds",
                    "units": "1",
                },
            ),
            "mixing_function_floor": (
                "mixing_step",
                floor[0],
                {"long_name": "mean of the split-half floors at T and at T+D", "units": "1"},
            ),
        },  # fmt: skip
        coords={"mixing_step": steps[later], "mixing_lag": ("mixing_step", steps[later] - steps[anchor])},
    )


def function_space_scaling(runs: list[xr.Dataset], n_classes: int, n_boot: int = 200, seed: int = 0) -> xr.Dataset:
    """Per intrinsic LR, the time at which the two starts' ensembles agree (the rule), its
    bootstrap interval, and the fitted log-log slope with its CI."""
    ensembles: dict[float, dict[float, list]] = {}
    for ds in runs:
        lr_e, run = final_phase(ds)[2], _run(ds)
        ensembles.setdefault(lr_e, {}).setdefault(run["training"]["init_scale"], []).append(ds)
    bad = {k: sorted(v) for k, v in ensembles.items() if len(v) != 2}
    if bad:
        raise ValueError(
            f"the scaling experiment needs exactly two training.init_scale values per intrinsic LR; got {bad}"
        )
    lrs = sorted(ensembles)
    rng = np.random.default_rng(seed)
    times, curves, ratios, steps = [], [], [], None
    for lr_e in lrs:
        (_, a), (_, b) = sorted(ensembles[lr_e].items())
        steps, _, pa = ensemble_predictions(a)
        _, _, pb = ensemble_predictions(b)
        d, *floors = half_distances(pa, pb, n_classes, half_weights(len(pa), n_boot, rng))
        f = matched_floor(*floors)
        t, ratio = _crossings(steps, d, f)
        times.append(t)
        ratios.append(ratio)
        curves.append((d[0], f[0]))
    times = np.array(times)  # (intrinsic LR, 1 + n_boot)
    slope, intercept = _loglog_fit(lrs, times[:, 0])
    boot_slopes = np.array([_loglog_fit(lrs, times[:, r])[0] for r in range(1, times.shape[1])])
    lo, hi = np.nanquantile(boot_slopes, [0.025, 0.975]) if np.isfinite(boot_slopes).any() else (np.nan, np.nan)
    bounds = np.array([_interval(t[1:]) for t in times])
    out = xr.Dataset(
        {
            "function_space_time": ("intrinsic_lr", times[:, 0]),
            "function_space_time_ci_low": ("intrinsic_lr", bounds[:, 0]),
            "function_space_time_ci_high": ("intrinsic_lr", bounds[:, 1]),
            "function_space_peak_ratio": ("intrinsic_lr", ratios),
            "function_space_resamples_reached": ("intrinsic_lr", np.isfinite(times[:, 1:]).mean(1)),
            "function_space_distance": (("intrinsic_lr", "scaling_step"), np.array([c[0] for c in curves])),
            "function_space_floor": (("intrinsic_lr", "scaling_step"), np.array([c[1] for c in curves])),
            "function_space_slope": slope,
            "function_space_slope_ci_low": lo,
            "function_space_slope_ci_high": hi,
            "function_space_intercept": intercept,
            "function_space_seeds": ("intrinsic_lr", [len(next(iter(ensembles[x].values()))) for x in lrs]),
        },
        coords={"intrinsic_lr": lrs, "scaling_step": steps},
    )
    for name, long_name in [
        (
            "function_space_time",
            "first step after the peak of D - F at which D <= F: D the l1 distance between "
            "disjoint halves of the two starts' ensembles, F their split-half floors' mean (NaN: never)",
        ),
        ("function_space_time_ci_low", "2.5% quantile over bootstrap resamples of seeds within halves"),
        ("function_space_time_ci_high", "97.5% quantile (inf: > 2.5% of resamples never crossed)"),
        ("function_space_peak_ratio", "D/F at the peak (near 1: the starts never parted)"),
        ("function_space_resamples_reached", "fraction of resamples in which D crossed F"),
        ("function_space_distance", "D: l1 distance between disjoint halves of the two starts' ensembles"),
        ("function_space_floor", "F: mean of the two starts' split-half floors"),
        ("function_space_slope", "fitted slope of log function_space_time on log intrinsic LR (predicted -1)"),
        ("function_space_slope_ci_low", "2.5% quantile of the slope over bootstrap resamples"),
        ("function_space_slope_ci_high", "97.5% quantile of the slope over bootstrap resamples"),
        ("function_space_intercept", "fitted intercept (log steps)"),
        ("function_space_seeds", "seeds per start's ensemble"),
        ("scaling_step", "effective step of the scaling experiment's evaluations"),
    ]:
        out[name].attrs.update(long_name=long_name, units="1")
    return out


def scaling_merge_times(runs: list[xr.Dataset], metric: str, tolerance: float, final_fraction: float):
    """Merge time of the two starts of each (intrinsic LR, seed): (sorted LRs, {lr_e: [times]})."""
    groups: dict[tuple, dict[float, np.ndarray]] = {}
    steps = None
    for ds in runs:
        run = _run(ds)
        flat = _flat(ds)
        key = (final_phase(flat)[2], run["training"]["seed"])
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


def norm_relaxation_scaling(scaling: list[xr.Dataset], metric: str, tolerance: float,
                            final_fraction: float) -> xr.Dataset:  # fmt: skip
    """The norm's relaxation time per intrinsic LR (mean, min and max over seeds of the
    starts' merge time) and its fitted log-log slope with a bootstrap CI over seeds."""
    lrs, per_seed = scaling_merge_times(scaling, metric, tolerance, final_fraction)
    times = [per_seed[x] for x in lrs]
    fit = fit_loglog_slope([x for x in lrs for _ in per_seed[x]], [t for x in lrs for t in per_seed[x]])
    out = xr.Dataset(
        {
            "norm_relaxation_time_mean": ("intrinsic_lr", [_stat(t, np.nanmean) for t in times]),
            "norm_relaxation_time_lower": ("intrinsic_lr", [_stat(t, np.nanmin) for t in times]),
            "norm_relaxation_time_upper": ("intrinsic_lr", [_stat(t, np.nanmax) for t in times]),
            "norm_relaxation_seeds_reached": ("intrinsic_lr", [int(np.isfinite(t).sum()) for t in times]),
        },
        coords={"intrinsic_lr": lrs},
    )
    for key in ("slope", "slope_ci_low", "slope_ci_high", "intercept"):
        out[f"norm_relaxation_{key}"] = fit[key]
    for name, long_name in [
        ("norm_relaxation_slope", "fitted slope of log norm_relaxation_time on log intrinsic LR, over (LR, seed)"),
        ("norm_relaxation_slope_ci_low", "95% bootstrap CI of the slope over (LR, seed) points, low end"),
        ("norm_relaxation_slope_ci_high", "95% bootstrap CI of the slope, high end"),
        ("norm_relaxation_intercept", "fitted intercept (log steps)"),
        (
            "norm_relaxation_time_mean",
            f"mean over seeds of the first step at which the two starts' {metric} agree within {tolerance:.0%} "
            "(the norm's relaxation, not the function-space claim)",
        ),
        ("norm_relaxation_time_lower", "earliest seed's norm relaxation time"),
        ("norm_relaxation_time_upper", "latest seed's norm relaxation time"),
        ("norm_relaxation_seeds_reached", "seeds whose two starts met"),
        ("intrinsic_lr", "intrinsic LR eta*lambda/(1-gamma)"),
    ]:
        out[name].attrs.update(long_name=long_name, units="1")
    return out


def _n_classes(runs: list[xr.Dataset]) -> int:
    return max(10, 1 + max(int(r["test_predictions"].max()) for r in runs))


def equilibrium_analysis(
    histories: list[xr.Dataset],
    scaling: list[xr.Dataset],
    angular: list[xr.Dataset],
    *,
    metric: str,
    tolerance: float,
    final_fraction: float,
    resamples: int = 200,
) -> xr.Dataset:
    """results/analysis/equilibrium.nc: distances, times to equilibrium, the fitted slopes.

    ``histories``: the runs of the schedules compared in function space (one ensemble each,
    the first the reference); ``scaling``: the runs of the time-scaling experiment;
    ``angular``: further runs whose equilibrium quantities are summarized (every run of the
    three lists is summarized once); ``resamples``: of the seed bootstrap.
    """
    parts = []
    if histories:
        groups = runs_by_experiment(histories)
        parts.append(function_space_distances(groups, _n_classes(histories), resamples))
        mixing = mixing_vs_equilibrium(next(iter(groups.values())), _n_classes(histories))
        if mixing is not None:
            parts.append(mixing)
    parts.append(run_summaries(unique_runs(histories, scaling, angular), metric, tolerance, final_fraction))
    if scaling:
        parts.append(norm_relaxation_scaling(scaling, metric, tolerance, final_fraction))
        if all("test_predictions" in r for r in scaling):
            parts.append(function_space_scaling(scaling, _n_classes(scaling), resamples))
    # "override" keeps each variable's own attributes (each comes from one part only)
    out = xr.merge(parts, compat="no_conflicts", join="outer", combine_attrs="override")
    out.attrs.update(
        file_attributes("Equilibrium of normalized nets under SGD with weight decay", REFERENCE, __name__),
        equilibrium_metric=metric,
        equilibrium_tolerance=tolerance,
        equilibrium_final_fraction=final_fraction,
        bootstrap_resamples=resamples,
    )
    return out


def _range(values) -> str:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return f"{values.min():.3f}..{values.max():.3f}" if len(values) else "n/a"


def floor_at_switch(history: xr.Dataset) -> float:
    """A history's matched floor at the first evaluation at or after its switch."""
    return float(history.l1_matched_floor.sel(step=history.history_switch_step, method="bfill"))


def summary(analysis: xr.Dataset) -> list[str]:
    """The fitted slopes, the histories' times, and per experiment the runs at equilibrium's
    measured/predicted ratios (range over runs and members)."""
    lines = []
    if "function_space_slope" in analysis:
        a = analysis
        lines.append(f"function-space slope {float(a.function_space_slope):.3f} (95% CI "
                     f"{float(a.function_space_slope_ci_low):.3f} .. {float(a.function_space_slope_ci_high):.3f}); "
                     "predicted -1")  # fmt: skip
        for x, t, lo, hi in zip(a.intrinsic_lr.values, a.function_space_time.values,
                                a.function_space_time_ci_low.values, a.function_space_time_ci_high.values):  # fmt: skip
            lines.append(f"  intrinsic LR {x:.3g}: step {t:g} [{lo:g}, {hi:g}], x lambda_e = {t * x:.2f}")
    if "norm_relaxation_slope" in analysis:
        lines.append(f"norm-relaxation slope {float(analysis.norm_relaxation_slope):.3f} (95% CI "
                     f"{float(analysis.norm_relaxation_slope_ci_low):.3f} .. "
                     f"{float(analysis.norm_relaxation_slope_ci_high):.3f}); a second, different measure")  # fmt: skip
    if "history_equilibrium_step" in analysis:
        lines.append(f"{analysis.schedule.values[0]} (reference): split-half floor after the switch <= "
                     f"{float(analysis.l1_noise_floor_after_switch[0]):.3f}")  # fmt: skip
        for name in analysis.schedule.values[1:]:
            h = analysis.sel(schedule=name)
            lines.append(f"{name}: function-space equilibrium at step {float(h.history_equilibrium_step):g} "
                         f"({float(h.history_equilibrium_relaxation_times):.2f} x 1/lambda_e after the switch); "
                         f"split-half floor after the switch <= {float(h.l1_noise_floor_after_switch):.3f}; "
                         f"distance at the switch {float(h.l1_distance_after_switch):.3f} = "
                         f"{float(h.l1_distance_after_switch) / floor_at_switch(h):.1f}x the matched "
                         "floor")  # fmt: skip
    experiment = np.array([str(r).split("/")[0] for r in analysis.run_id.values])
    reached = analysis.reached_equilibrium.values.astype(bool)
    for name in dict.fromkeys(experiment):
        sel = (experiment == name) & reached
        a = analysis.isel(run_id=sel)
        lines.append(
            f"{name}: {int(sel.sum())}/{int((experiment == name).sum())} runs at equilibrium; measured/predicted: "
            f"angular update {_range(a.angular_update_measured / a.angular_update_predicted)}, "
            f"norm (noise trace) {_range(a.weight_norm_measured / a.weight_norm_predicted)}, "
            f"norm (full gradient, older) {_range(a.weight_norm_measured / a.weight_norm_predicted_full_gradient)}, "
            f"buffer identity {_range(a.weight_norm_measured / a.weight_norm_buffer_identity)}"
        )
    return lines
