"""The exponential-LR claims of the ledger (``lrdynamics.studies.ledger``; criteria and
their reasons in docs/science.md section 8), measured from ``explr_equivalence.nc`` and
``decay_equilibrium.nc``."""

from __future__ import annotations

import numpy as np
import xarray as xr

from lrdynamics.engine.schedules import alpha_root
from lrdynamics.studies.ledger import (
    CONFIRMED,
    NOT_CONFIRMED,
    NOT_RESOLVED,
    Measurement,
    fmt,
    merge_outcome,
    not_measured,
)


def _pairs(eq: xr.Dataset, schedule: str) -> list[xr.Dataset]:
    """The pairs of one schedule with its decay on the LR (the paper's form)."""
    keep = (eq.schedule.values == schedule) & (eq.decay_target.values == "lr")
    return [eq.isel(pair=i) for i in np.flatnonzero(keep)]


def _equivalence(analyses, schedule: str, *, floor_factor: float, absolute_floor: float, max_floor: float):
    quantity = "largest logit gap / allowed gap"
    criterion = (f"test-logit gap <= max({fmt(absolute_floor)}, {fmt(floor_factor)} x chaos floor) at every "
                 f"evaluation (value <= 1), while the chaos floor stays <= {fmt(max_floor)}")  # fmt: skip
    pairs = _pairs(analyses["explr_equivalence"], schedule)
    if not pairs:
        return not_measured(quantity, criterion, f"explr_equivalence has no pair with a {schedule} schedule")
    ratios, floors, status = [], [], []
    for p in pairs:
        allowed = np.maximum(absolute_floor, floor_factor * p.chaos_floor_logit_diff)
        ratios.append(float((p.max_abs_logit_diff / allowed).max()))
        floors.append(float(p.chaos_floor_logit_diff.max()))
        status.append(str(p.status.item()))
    value = max(ratios)
    if any(s != "completed" for s in status):
        return Measurement(quantity, value, criterion, NOT_RESOLVED, f"a run did not complete ({', '.join(status)})")
    if max(floors) > max_floor:
        reason = f"the chaos floor reached {fmt(max(floors))} > {fmt(max_floor)}: twins one ulp apart already differ"
        return Measurement(quantity, value, criterion, NOT_RESOLVED, reason)
    if value <= 1:
        return Measurement(quantity, value, criterion, CONFIRMED)
    return Measurement(quantity, value, criterion, NOT_CONFIRMED, f"the gap exceeds the allowed gap {fmt(value)}x")


def explr_equals_constant(analyses, **criterion):
    return _equivalence(analyses, "constant", **criterion)


def texp_equals_step(analyses, **criterion):
    return _equivalence(analyses, "step", **criterion)


def exp_cosine_equals_cosine(analyses, **criterion):
    return _equivalence(analyses, "cosine", **criterion)


def explr_norm_growth(analyses, *, max_relative_error: float, min_relaxations: float):
    """The Exp-LR net's |w| grows at the predicted rate -ln(alpha) per step over the second
    half of the run, once the WD reference's norm has had ``min_relaxations`` relaxation
    times to settle (before that the reference's own norm changes and adds to the rate)."""
    quantity = "growth rate of the Exp-LR |w| / -ln(alpha)"
    criterion = (f"log-linear fit of |w| over the second half within {fmt(max_relative_error)} of -ln(alpha), "
                 f"the first half >= {fmt(min_relaxations)} relaxation times; "
                 "the function equal: explr_equals_constant")  # fmt: skip
    pairs = _pairs(analyses["explr_equivalence"], "constant")
    if not pairs:
        return not_measured(quantity, criterion, "explr_equivalence has no pair with a constant schedule")
    p = pairs[0]
    rate = -np.log(alpha_root(float(p.lr0), float(p.wd0), float(p.momentum)))
    steps = p.step.values.astype(float)
    norm = p.weight_norm_counterpart.values
    half = steps >= steps[-1] / 2
    measured = np.polyfit(steps[half], np.log(norm[half]), 1)[0]
    value = float(measured / rate)
    growth = float(norm[-1] / norm[0])
    settled = steps[-1] / 2 * rate
    if settled < min_relaxations:
        reason = (f"needs {int(np.ceil(2 * min_relaxations / rate))} steps (the second half from "
                  f"{fmt(min_relaxations)} relaxation times on), runs {int(steps[-1])}")  # fmt: skip
        return Measurement(quantity, value, criterion, NOT_RESOLVED, reason)
    if abs(value - 1) <= max_relative_error:
        return Measurement(quantity, value, criterion + f" (|w| grew {fmt(growth)}x)", CONFIRMED)
    return Measurement(quantity, value, criterion, NOT_CONFIRMED, f"the rate is off by {fmt(abs(value - 1))}")


def _decay(analyses, key: str, what: str, *, min_peak_ratio: float, min_relaxations: float):
    quantity = "time to meet after the last decay (relaxation times)"
    criterion = (f"the rule of section 3 from the last milestone: D <= F after the peak, the ensembles first "
                 f">= {fmt(min_peak_ratio)}x the floor apart; not meeting within {fmt(min_relaxations)} "
                 "relaxation times refutes")  # fmt: skip
    an = analyses["decay_equilibrium"]
    rows = [an.isel(comparison=i) for i in range(an.sizes["comparison"]) if key in str(an.compared_point.values[i])]
    if not rows:
        return not_measured(
            quantity, criterion, f"decay_equilibrium has no pair of ensembles that differ in {key} ({what})"
        )
    verdict, reason, value, ci = merge_outcome(rows[0], min_peak_ratio=min_peak_ratio, min_relaxations=min_relaxations)
    return Measurement(quantity, value, criterion, verdict, reason, *ci)


def decay_target_same_equilibrium(analyses, **criterion):
    return _decay(analyses, "decay_target", "LR decay vs WD decay", **criterion)


def instant_decay_temporary(analyses, **criterion):
    return _decay(analyses, "milestones", "Exp LR with and without instant decays", **criterion)
