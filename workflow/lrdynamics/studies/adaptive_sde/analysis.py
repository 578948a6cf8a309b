"""The analysis of Adam/RMSprop runs: ``results/analysis/adaptive.nc`` (the square-root
scaling rule across batch sizes, and adaptive SVAG across l; docs/science.md section 5).
The transforms themselves are in ``lrdynamics.engine.adaptive``.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import drop_hyperparameter_dims, file_attributes
from lrdynamics.studies.adaptive_sde import REFERENCE
from lrdynamics.studies.sde_validity.svag import svag_analysis


def _run_settings(ds) -> tuple[str, str, float]:
    """(optimizer, scaling rule, kappa = B / reference batch size) of a run file."""
    run = json.loads(ds.attrs["config_json"])
    sched = run["schedule"]
    return (
        run["optimizer"]["name"],
        sched["scaling_rule"],
        run["training"]["batch_size"] / sched["reference_batch_size"],
    )


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of different lengths (runs evaluated a different number of times) as one
    2-d array, NaN past each row's end."""
    out = np.full((len(rows), max(len(r) for r in rows)), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


DESCRIBED = {
    "test_accuracy": "test accuracy (mean over seeds)",
    "test_loss": "test loss (mean over seeds)",
    "train_loss": "train loss, eval mode (mean over seeds)",
    "epoch": "passes over the training set at each evaluation",
    "final_test_accuracy": "test accuracy at the end (mean over completed seeds; NaN: none completed)",
    "completed_seeds": "runs that completed",
    "learning_rate": "the LR after the scaling rule",
    "final_test_accuracy_spread": "max - min over kappa of the final test accuracy (completed runs)",
    "final_test_accuracy_std": "standard deviation over kappa of the final test accuracy (completed runs)",
    "test_accuracy_curve_distance": "mean over epochs of |test accuracy - that at the smallest kappa|",
    "mean_test_accuracy_curve_distance": "test_accuracy_curve_distance averaged over kappa > the smallest",
    "noise_epoch": "passes over the training set at each noise measurement",
    "gradient_noise_trace": "trace of the minibatch gradient noise covariance tr Sigma_B at the run's B",
    "signal_to_noise": "signal-to-noise ratio |grad L|^2 / tr Sigma_B",
}
# With gradient_noise.estimator: per_example, the adaptive-SDE authors' definitions
# (cifar_main.py, Variancegradient and its 'Signal-Noise-ratio').
PER_EXAMPLE_DESCRIBED = {
    "gradient_noise_trace": (
        "trace of the single-example gradient noise covariance tr Sigma_1 = sum_i |g_i|^2/(S-1) - "
        "S |mean_i g_i|^2/(S-1) over S single examples drawn with replacement (train mode)"
    ),
    "signal_to_noise": (
        "signal-to-noise ratio (mean_i |g_i|)^2 / tr Sigma_1 of S single-example gradients g_i "
        "(the adaptive-SDE authors' definition: the mean of the gradient norms, squared)"
    ),
}


def noise_estimator(runs: list[xr.Dataset]) -> str | None:
    """The gradient_noise.estimator of the runs that measured noise (None: none did); runs
    of both estimators in one analysis are an error (their SNRs are different quantities)."""
    found = {
        json.loads(ds.attrs["config_json"])["gradient_noise"].get("estimator", "minibatch")
        for ds in runs
        if "gradient_signal" in ds
    }
    if len(found) > 1:
        raise ValueError("the runs mix gradient_noise.estimator minibatch and per_example: one SNR definition each")
    return found.pop() if found else None


def _noise_curves(noisy: list[xr.Dataset], estimator: str) -> tuple[np.ndarray, np.ndarray]:
    """(noise trace, SNR) per run and measurement: tr Sigma_B and G / tr Sigma_B, or for
    ``per_example`` tr Sigma_1 and (mean_i |g_i|)^2 / tr Sigma_1 (the authors')."""
    if estimator != "per_example":
        trace = _padded([ds.batch_gradient_noise.values for ds in noisy])
        return trace, _padded([ds.gradient_signal.values for ds in noisy]) / trace
    missing = [ds.attrs["run"] for ds in noisy if "example_gradient_norm" not in ds]
    if missing:
        raise ValueError(
            f"runs {', '.join(missing)} measured gradient_noise.estimator: per_example but their files have no "
            "example_gradient_norm (the mean single-example gradient norm the authors' SNR needs)"
        )
    trace = _padded([ds.gradient_noise.values for ds in noisy])
    return trace, _padded([ds.example_gradient_norm.values for ds in noisy]) ** 2 / trace


def _curve_distance(out: xr.Dataset) -> np.ndarray:
    """Per (optimizer, rule, kappa): the mean |test accuracy - that at the smallest kappa|
    over epochs. The rule is about trajectories in epochs: each kappa's curve is
    interpolated onto the reference's evaluation epochs."""
    distance = np.full(out.final_test_accuracy.shape, np.nan)
    for i, opt in enumerate(out.optimizer.values):
        for j, rule in enumerate(out.scaling_rule.values):
            d = out.sel(optimizer=opt, scaling_rule=rule)
            ref = d.isel(kappa=0).dropna("evaluation", subset=["test_accuracy"])
            for k in range(len(out.kappa)):
                e = d.isel(kappa=k).dropna("evaluation", subset=["test_accuracy"])
                if len(e.evaluation) and len(ref.evaluation):
                    inside = ref.epoch.values <= e.epoch.values[-1]
                    curve = np.interp(ref.epoch.values[inside], e.epoch.values, e.test_accuracy.values)
                    distance[i, j, k] = np.mean(np.abs(curve - ref.test_accuracy.values[inside]))
    return distance


def sqrt_scaling_analysis(runs: list[xr.Dataset]) -> xr.Dataset:
    """Curves and final test accuracy per (optimizer, scaling rule, kappa), seeds averaged,
    the spread of final test accuracy across kappa per rule, and, where the runs measured
    it, the gradient-noise trace tr Sigma_B and the signal-to-noise ratio |grad L|^2 / tr Sigma_B
    (``gradient_noise.estimator: per_example``: the authors' tr Sigma_1 and (mean_i |g_i|)^2 / tr Sigma_1).

    Runs evaluate at different steps (the batch size differs), so curves are indexed by
    evaluation number with each run's own ``epoch``; a diverged run keeps its status and
    has NaN for its final accuracy.
    """
    groups: dict[tuple, list[xr.Dataset]] = {}
    for ds in runs:
        groups.setdefault(_run_settings(ds), []).append(drop_hyperparameter_dims(ds))
    if not groups:
        raise ValueError("the square-root scaling analysis needs runs")
    parts, diverged, finals = [], [], {}
    estimator = noise_estimator([ds for group in groups.values() for ds in group])
    for (opt, rule, kappa), group in sorted(groups.items()):
        completed = [ds for ds in group if ds.attrs["status"] == "completed"]
        finals[opt, rule, kappa] = np.array([float(ds.test_accuracy.values.ravel()[-1]) for ds in completed])
        diverged += [
            f"{ds.attrs['run']} (step {ds.attrs.get('diverged_step', '?')})" for ds in group if ds not in completed
        ]
        use = completed or group  # curves of a diverged run up to its divergence, when none completed
        curves = {
            name: _padded([ds[name].values for ds in use]) for name in ("test_accuracy", "test_loss", "train_loss")
        }
        part = xr.Dataset({name: ("evaluation", np.nanmean(v, axis=0)) for name, v in curves.items()})
        part["epoch"] = ("evaluation", _padded([ds.epoch.values for ds in use])[0])
        part = part.assign_coords(evaluation=np.arange(part.sizes["evaluation"]))
        part["final_test_accuracy"] = (
            float(np.mean([ds.test_accuracy.values[-1] for ds in completed])) if completed else np.nan
        )
        part["completed_seeds"] = len(completed)
        part["learning_rate"] = json.loads(use[0].attrs["config_json"])["schedule"]["lr"]
        noisy = [ds for ds in use if "gradient_signal" in ds]
        if noisy:
            trace, snr = _noise_curves(noisy, estimator)
            part["noise_epoch"] = ("noise_evaluation", _padded([ds.noise_epoch.values for ds in noisy])[0])
            part["gradient_noise_trace"] = ("noise_evaluation", np.nanmean(trace, axis=0))
            part["signal_to_noise"] = ("noise_evaluation", np.nanmean(snr, axis=0))
            part = part.assign_coords(noise_evaluation=np.arange(part.sizes["noise_evaluation"]))
        parts.append(part.expand_dims(optimizer=[opt], scaling_rule=[rule], kappa=[kappa]))
    out = xr.combine_by_coords(parts, data_vars="minimal", coords="different", compat="equals", join="outer")
    final = out.final_test_accuracy
    out["final_test_accuracy_spread"] = final.max("kappa") - final.min("kappa")
    out["final_test_accuracy_std"] = final.std("kappa")
    if {"none", "linear", "sqrt"} <= set(out.scaling_rule.values):
        out = out.merge(sqrt_rule_advantage(finals, list(out.optimizer.values), list(out.kappa.values)))
    out["test_accuracy_curve_distance"] = (("optimizer", "scaling_rule", "kappa"), _curve_distance(out))
    out["mean_test_accuracy_curve_distance"] = out.test_accuracy_curve_distance.isel(kappa=slice(1, None)).mean("kappa")
    described = DESCRIBED | (PER_EXAMPLE_DESCRIBED if estimator == "per_example" else {})
    for name, text in described.items():
        if name in out:
            out[name].attrs.update(long_name=text, units="1")
    if estimator:
        out.attrs.update(gradient_noise_estimator=estimator)
    out["kappa"].attrs.update(long_name="batch size / reference batch size", units="1")
    out.attrs.update(scaling_diverged_runs=", ".join(diverged) or "none")
    return out


def sqrt_rule_advantage(finals: dict[tuple, np.ndarray], optimizers: list[str], kappas: list, resamples: int = 1000,
                        seed: int = 0, level: float = 0.95) -> xr.Dataset:  # fmt: skip
    """Per optimizer: how much smaller the square-root rule's spread of final test accuracy
    across kappa is than the smaller of the other two rules' (positive: the rule keeps the
    runs closer), with a CI from resampling the seeds of every (rule, kappa)."""

    def spread(rule, draw):
        means = [draw(finals[opt, rule, k]).mean() if len(finals.get((opt, rule, k), [])) else np.nan for k in kappas]
        return np.nanmax(means) - np.nanmin(means)

    rng = np.random.default_rng(seed)
    value, lo, hi, seeds = [], [], [], []
    for opt in optimizers:
        n = min(len(finals.get((opt, r, k), [])) for r in ("none", "linear", "sqrt") for k in kappas)
        seeds.append(n)
        same = lambda x: x  # noqa: E731
        value.append(min(spread("none", same), spread("linear", same)) - spread("sqrt", same))
        resample = lambda x: x[rng.integers(0, len(x), len(x))]  # noqa: E731
        boots = [min(spread("none", resample), spread("linear", resample)) - spread("sqrt", resample)
                 for _ in range(resamples if n > 1 else 0)]  # fmt: skip
        qs = np.nanquantile(boots, [(1 - level) / 2, (1 + level) / 2]) if boots else (np.nan, np.nan)
        lo.append(qs[0])
        hi.append(qs[1])
    text = "min(spread none, spread linear) - spread sqrt of the seed-mean final test accuracy across kappa"
    return xr.Dataset(
        {
            "sqrt_spread_advantage": ("optimizer", value, {"long_name": text, "units": "1"}),
            "sqrt_spread_advantage_ci_low": (
                "optimizer",
                lo,
                {"long_name": "2.5% quantile, seeds resampled", "units": "1"},
            ),
            "sqrt_spread_advantage_ci_high": ("optimizer", hi, {"long_name": "97.5% quantile", "units": "1"}),
            "scaling_seeds": (
                "optimizer",
                seeds,
                {"long_name": "fewest completed seeds of any (rule, kappa)", "units": "1"},
            ),
        },
        coords={"optimizer": optimizers},
    )


def adaptive_svag_analysis(runs: list[xr.Dataset]) -> xr.Dataset:
    """``svag.svag_analysis`` per optimizer, stacked along ``optimizer``, its variables
    prefixed ``svag_``, with the effective epoch of each effective step."""
    by_opt: dict[str, list[xr.Dataset]] = {}
    for ds in runs:
        by_opt.setdefault(ds.attrs["optimizer"], []).append(ds)
    parts, diverged = [], []
    for opt, group in sorted(by_opt.items()):
        part = svag_analysis(group)
        diverged += [f"{opt}: {d}" for d in part.attrs["diverged_runs"].split(", ") if d != "none"]
        part = part.reset_coords(drop=True)  # the runs' own coordinates (epoch, updates_done)
        part = part.rename({name: f"svag_{name}" for name in part.data_vars})
        part = part.assign_coords(svag_epoch=("step", part.step.values / group[0].attrs["steps_per_epoch"]))
        part["svag_epoch"].attrs.update(long_name="effective epochs (effective steps / steps per epoch)", units="1")
        parts.append(part.expand_dims(optimizer=[opt]).assign_coords(svag_reference_l=part.attrs["reference_l"]))
    out = xr.concat(parts, dim="optimizer", join="outer", coords="different", compat="equals", combine_attrs="drop")
    out.attrs.update(svag_diverged_runs="; ".join(diverged) or "none")
    return out


def _one_experiment_per_optimizer(runs: list[xr.Dataset], part: str) -> None:
    """Runs of several experiments (a figure's ``experiments``) are read as one grid only
    when each optimizer comes from one experiment."""
    source: dict[str, set] = {}
    for ds in runs:
        source.setdefault(ds.attrs["optimizer"], set()).add(ds.attrs["experiment"])
    shared = {opt: sorted(names) for opt, names in source.items() if len(names) > 1}
    if shared:
        raise ValueError(
            f"the {part} runs of one optimizer must come from one experiment: "
            + "; ".join(f"{opt} from {', '.join(names)}" for opt, names in shared.items())
        )


def adaptive_analysis(scaling: list[xr.Dataset], svag: list[xr.Dataset]) -> xr.Dataset:
    """results/analysis/adaptive.nc: the square-root scaling part (``scaling``: the runs
    across batch sizes and rules) and the adaptive SVAG part (``svag``: the runs across l),
    each present when its runs are given, in one dataset. Either part may read several
    experiments, each optimizer from one of them."""
    _one_experiment_per_optimizer(scaling, "square-root scaling")
    _one_experiment_per_optimizer(svag, "adaptive SVAG")
    parts = []
    if scaling:
        parts.append(sqrt_scaling_analysis(scaling))
    if svag:
        parts.append(adaptive_svag_analysis(svag))
    if not parts:
        raise ValueError("the adaptive analysis needs the runs of adaptive_sqrt_scaling or adaptive_svag")
    attrs = {k: v for p in parts for k, v in p.attrs.items()}
    out = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop")
    out.attrs.update(attrs, **file_attributes("Adam/RMSprop: batch-size scaling rules and SVAG", REFERENCE, __name__))
    return out


def summary(analysis: xr.Dataset) -> list[str]:
    """Final test accuracy per kappa, its spread and the curve distance per (optimizer,
    rule); each l's distance from the largest l per optimizer."""
    lines = []
    if "final_test_accuracy" in analysis:
        for opt in analysis.optimizer.values:
            for rule in analysis.scaling_rule.values:
                d = analysis.sel(optimizer=opt, scaling_rule=rule)
                finals = ", ".join(
                    f"kappa={k:g}: {a:.4f}" for k, a in zip(d.kappa.values, d.final_test_accuracy.values)
                )
                spread, distance = float(d.final_test_accuracy_spread), float(d.mean_test_accuracy_curve_distance)
                lines.append(
                    f"{opt}, {rule} rule: final test accuracy {finals}; spread {spread:.4f}; "
                    f"mean curve distance from kappa={d.kappa.values[0]:g}: {distance:.4f}"
                )
    if "svag_test_accuracy_distance" in analysis:
        for opt in analysis.optimizer.values:
            d = analysis.sel(optimizer=opt)
            lines += [
                f"{opt}, l={l}: mean test accuracy distance from l={int(d.svag_reference_l)}: {dist:.4f}"
                for l, dist in zip(d.l.values, d.svag_test_accuracy_distance.values)
                if np.isfinite(dist)
            ]
    return lines
