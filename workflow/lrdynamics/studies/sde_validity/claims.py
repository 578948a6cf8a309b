"""The SVAG and linear-scaling-rule claims of the ledger (``lrdynamics.studies.ledger``;
criteria and their reasons in docs/science.md section 8), from ``svag.nc`` and ``lsr.nc``."""

from __future__ import annotations

import numpy as np
import xarray as xr

from lrdynamics.studies.ledger import (
    CONFIRMED,
    NOT_CONFIRMED,
    NOT_RESOLVED,
    Measurement,
    fmt,
    judge_interval,
    not_measured,
)


def convergence_exponent(an: xr.Dataset, prefix: str = "") -> tuple:
    """(exponent, CI low, CI high, the smallest successive distance / its seed-noise floor)."""
    v = lambda name: an[prefix + name]  # noqa: E731
    ratio = float((v("successive_distance") / v("successive_distance_floor")).min())
    return float(v("convergence_exponent")), float(v("convergence_exponent_ci_low")), float(
        v("convergence_exponent_ci_high")), ratio  # fmt: skip


def svag_rate(analyses, *, target: float, max_half_width: float, min_signal: float):
    an = analyses["svag"]
    quantity = "exponent p of |f_l - f_2l| ~ l^(-p) (seed means)"
    criterion = (f"{fmt(target)} inside the 95% CI (seeds resampled), half-width <= {fmt(max_half_width)}, every "
                 f"|f_l - f_2l| >= {fmt(min_signal)}x its seed-noise floor")  # fmt: skip
    if "convergence_exponent" not in an:
        return not_measured(quantity, criterion, "svag.nc has no rate (needs l = 1, 2, 4, ... doubling, >= 3 values)")
    p, lo, hi, signal = convergence_exponent(an)
    if not signal >= min_signal:
        reason = (
            f"the smallest |f_l - f_2l| is {fmt(signal)}x its seed-noise floor (needs {fmt(min_signal)}x): more seeds"
        )
        return Measurement(quantity, p, criterion, NOT_RESOLVED, reason, lo, hi)
    return judge_interval(quantity, p, lo, hi, target=target, max_half_width=max_half_width, criterion=criterion)


def lsr_holds_below_critical_batch(analyses, *, hold_tolerance: float, break_drop: float):
    """Per net with batch sizes both <= B*/2 and >= 2 B*: the LSR holds (final test accuracy
    within ``hold_tolerance`` of the smallest batch's) up to B*/2 and breaks (a drop of at
    least ``break_drop``) from 2 B* on."""
    lsr = analyses["lsr"]
    quantity = "worst drop of final test accuracy from the smallest B, up to B*/2 (the drops above 2B*: criterion)"
    criterion = f"drops <= {fmt(hold_tolerance)} for B <= B*/2 and >= {fmt(break_drop)} for B >= 2B*, per net"
    holds, breaks, skipped, notes = [], [], [], []
    for name in lsr.experiment.values:
        e = lsr.sel(experiment=name)
        b_star = float(e.predicted_critical_batch_size)
        acc = e.final_test_accuracy.dropna("batch_size")
        if not np.isfinite(b_star) or not len(acc):
            skipped.append(f"{name} (B* not finite)")
            continue
        b = acc.batch_size.values
        below, above = b[b <= b_star / 2], b[b >= 2 * b_star]
        if not len(below) or not len(above) or b.min() not in below:
            skipped.append(f"{name} (B* {fmt(b_star)}: no batch sizes on both sides)")
            continue
        ref = float(acc.sel(batch_size=b.min()))
        holds.append(max(ref - float(acc.sel(batch_size=x)) for x in below))
        breaks.append(min(ref - float(acc.sel(batch_size=x)) for x in above))
        notes.append(f"{name}: B* {fmt(b_star)}, drops {fmt(holds[-1])} | {fmt(breaks[-1])}")
    if not holds:
        return not_measured(quantity, criterion, "no net has batch sizes on both sides of B*: " + ", ".join(skipped))
    value = max(holds)
    criterion += " (" + "; ".join(notes + [f"skipped {s}" for s in skipped]) + ")"
    misses = []
    if value > hold_tolerance:
        misses.append(f"below B*/2 the accuracy drops {fmt(value)}")
    if min(breaks) < break_drop:
        misses.append(f"above 2B* it drops only {fmt(min(breaks))}")
    if misses:
        return Measurement(quantity, value, criterion, NOT_CONFIRMED, "; ".join(misses))
    return Measurement(quantity, value, criterion, CONFIRMED)
