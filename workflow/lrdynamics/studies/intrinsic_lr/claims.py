"""The intrinsic-LR claims of the ledger (``lrdynamics.studies.ledger``; criteria and their
reasons in docs/science.md section 8), measured from ``equilibrium.nc``,
``scale_invariant_toy.nc`` and ``small_lr.nc``."""

from __future__ import annotations

import numpy as np

from lrdynamics.studies.ledger import (
    CONFIRMED,
    NOT_CONFIRMED,
    NOT_RESOLVED,
    Measurement,
    combine,
    fmt,
    judge_equivalence_band,
    judge_interval,
    merge_outcome,
    not_measured,
)


def scale_invariant_toy(analyses, *, converged_loss: float, unsettled_loss: float, final_fraction: float):
    """GD on x^2/(x^2+y^2): without WD the loss falls below ``converged_loss`` and stays
    there; with WD it keeps coming back above ``unsettled_loss`` in the final window."""
    toy = analyses["scale_invariant_toy"]
    quantity = "largest loss over the final window with WD"
    criterion = (f"over the last {fmt(final_fraction)} of the steps: no WD stays <= {fmt(converged_loss)}, "
                 f"every WD > 0 rises above {fmt(unsettled_loss)}")  # fmt: skip
    wds = toy.wd.values
    if not (wds == 0).any() or not (wds > 0).any():
        return not_measured(quantity, criterion, "the toy needs wds with 0 and a positive WD")
    late = toy.step.values >= toy.step.values[-1] * (1 - final_fraction)
    loss = toy.loss.isel(step=late)
    no_wd = float(loss.sel(wd=0.0).max())
    with_wd = [float(loss.sel(wd=w).max()) for w in wds[wds > 0]]
    value = min(with_wd)
    criterion += f" (no WD: {fmt(no_wd)})"
    if no_wd <= converged_loss and value > unsettled_loss:
        return Measurement(quantity, value, criterion, CONFIRMED)
    misses = []
    if no_wd > converged_loss:
        misses.append(f"without WD the loss is still {fmt(no_wd)}")
    if value <= unsettled_loss:
        misses.append(f"with WD it stays <= {fmt(value)}")
    return Measurement(quantity, value, criterion, NOT_CONFIRMED, "; ".join(misses))


def _ratio_claim(analyses, measured: str, predicted: str, what: str, *, tolerance: float):
    eq = analyses["equilibrium"]
    quantity = f"median {what} measured / predicted (runs at equilibrium; CI: 2.5-97.5% of runs)"
    criterion = f"median within 1 +- {fmt(tolerance)} over the runs and members at equilibrium"
    if "reached_equilibrium" not in eq:
        return not_measured(quantity, criterion, "equilibrium.nc has no per-run summaries")
    ratio = (eq[measured] / eq[predicted]).values[eq.reached_equilibrium.values.astype(bool)]
    ratio = ratio[np.isfinite(ratio)]
    if not len(ratio):
        return not_measured(quantity, criterion, f"no run reached equilibrium (of {eq.sizes['run_id']})")
    value = float(np.median(ratio))
    lo, hi = (float(q) for q in np.quantile(ratio, [0.025, 0.975]))
    criterion += f" ({len(ratio)} of {eq.sizes['run_id']})"
    if abs(value - 1) <= tolerance:
        return Measurement(quantity, value, criterion, CONFIRMED, "", lo, hi)
    return Measurement(quantity, value, criterion, NOT_CONFIRMED, f"the median is off by {fmt(abs(value - 1))}", lo, hi)


def angular_update(analyses, **criterion):
    return _ratio_claim(analyses, "angular_update_measured", "angular_update_predicted", "angular update", **criterion)


def equilibrium_norm(analyses, **criterion):
    return _ratio_claim(analyses, "weight_norm_measured", "weight_norm_predicted", "|w|", **criterion)


def function_space_time_scaling(analyses, *, target: float, max_half_width: float):
    eq = analyses["equilibrium"]
    quantity = "log-log slope of time to equilibrium vs intrinsic LR"
    criterion = f"{fmt(target)} inside the 95% CI, the CI half-width <= {fmt(max_half_width)}"
    if "function_space_slope" not in eq:
        return not_measured(
            quantity, criterion, "equilibrium.nc has no function-space scaling (ensembles with predictions)"
        )
    return judge_interval(quantity, float(eq.function_space_slope), float(eq.function_space_slope_ci_low),
                          float(eq.function_space_slope_ci_high), target=target, max_half_width=max_half_width,
                          criterion=criterion)  # fmt: skip


def histories_same_equilibrium(analyses, *, min_peak_ratio: float, min_relaxations: float):
    eq = analyses["equilibrium"]
    quantity = "latest time to meet the reference after the switch (relaxation times)"
    criterion = (f"every history meets the reference by the rule of section 3, after being >= {fmt(min_peak_ratio)}x "
                 f"the floor apart; not meeting within {fmt(min_relaxations)} relaxation times refutes")  # fmt: skip
    if "history_equilibrium_step" not in eq or eq.sizes.get("schedule", 0) < 2:
        return not_measured(quantity, criterion, "equilibrium.nc has fewer than two histories")
    parts = [merge_outcome(eq.isel(schedule=i), min_peak_ratio=min_peak_ratio, min_relaxations=min_relaxations)
             for i in range(1, eq.sizes["schedule"])]  # fmt: skip
    verdict, reason = combine([(name, p[0], p[1]) for name, p in zip(eq.schedule.values[1:], parts)])
    times = [p[2] for p in parts]
    value = float(np.max(times)) if np.isfinite(times).all() else np.nan
    return Measurement(quantity, value, criterion, verdict, reason,
                       float(np.max([p[3][0] for p in parts])), float(np.max([p[3][1] for p in parts])))  # fmt: skip


def small_lr_reaches_standard(analyses, *, tolerance: float, min_relaxations: float):
    a = analyses["small_lr"]
    quantity = "final test accuracy, small LR - standard LR (95% CI over seeds)"
    criterion = (f"the CI above -{fmt(tolerance)}, after >= {fmt(min_relaxations)} of the small LR's relaxation "
                 "times before its first decay")  # fmt: skip
    relax = float(a.small_lr_relaxation_times)
    if relax < min_relaxations:
        needs = int(np.ceil(min_relaxations / float(a.small_lr_intrinsic_lr)))
        reason = (
            f"needs {needs} steps before the decay ({fmt(min_relaxations)}/lambda_e), runs {int(a.steps_before_decay)}"
        )
        return Measurement(quantity, float(a.accuracy_gap), criterion, NOT_RESOLVED, reason,
                           float(a.accuracy_gap_ci_low), float(a.accuracy_gap_ci_high))  # fmt: skip
    return judge_equivalence_band(quantity, float(a.accuracy_gap), float(a.accuracy_gap_ci_low),
                                  float(a.accuracy_gap_ci_high), tolerance=tolerance, criterion=criterion,
                                  one_sided=True)  # fmt: skip
