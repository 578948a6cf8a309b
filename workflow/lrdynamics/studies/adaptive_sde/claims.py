"""The Adam/RMSprop claims of the ledger (``lrdynamics.studies.ledger``; criteria and their
reasons in docs/science.md section 8), from ``adaptive.nc``."""

from __future__ import annotations

from lrdynamics.studies.ledger import (
    NOT_RESOLVED,
    Measurement,
    combine,
    fmt,
    judge_positive,
    not_measured,
)
from lrdynamics.studies.sde_validity.claims import convergence_exponent


def sqrt_rule_closest(analyses, *, min_seeds: int, max_half_width: float):
    """Per optimizer, the square-root rule's spread of final test accuracy across kappa is
    smaller than no scaling's and the linear rule's (advantage > 0, with its seed CI)."""
    a = analyses["adaptive"]
    quantity = "min(spread none, spread linear) - spread sqrt, worst optimizer (95% CI over seeds)"
    criterion = (f"the CI above 0 for Adam and RMSprop, >= {min_seeds} seeds per (rule, kappa), CI half-width "
                 f"<= {fmt(max_half_width)}")  # fmt: skip
    if "sqrt_spread_advantage" not in a:
        return not_measured(quantity, criterion, "adaptive.nc has no comparison of the three rules")
    parts = []
    for opt in a.optimizer.values:
        o = a.sel(optimizer=opt)
        lo, hi, seeds = (
            float(o.sqrt_spread_advantage_ci_low),
            float(o.sqrt_spread_advantage_ci_high),
            int(o.scaling_seeds),
        )
        few = (NOT_RESOLVED, f"{seeds} seed(s) per (rule, kappa), needs {min_seeds}")
        verdict, reason = few if seeds < min_seeds else judge_positive(lo, hi, max_half_width)
        parts.append((opt, verdict, reason))
    o = a.isel(optimizer=a.sqrt_spread_advantage.argmin().item())
    return Measurement(quantity, float(o.sqrt_spread_advantage), criterion, *combine(parts),
                       float(o.sqrt_spread_advantage_ci_low), float(o.sqrt_spread_advantage_ci_high))  # fmt: skip


def adaptive_svag_converges(analyses, *, min_signal: float, max_half_width: float):
    """Per optimizer, the successive distances of adaptive SVAG shrink with l: exponent
    p > 0 (CI above 0), the distances resolved above seed noise."""
    a = analyses["adaptive"]
    quantity = "exponent p of |f_l - f_2l| ~ l^(-p), worst optimizer (95% CI over seeds)"
    criterion = (f"the CI above 0 for each optimizer, half-width <= {fmt(max_half_width)}, every |f_l - f_2l| >= "
                 f"{fmt(min_signal)}x its seed-noise floor")  # fmt: skip
    if "svag_convergence_exponent" not in a:
        return not_measured(quantity, criterion, "adaptive.nc has no SVAG rate (needs l doubling, >= 3 values)")
    rows, parts = [], []
    for opt in a.optimizer.values:
        p, lo, hi, signal = convergence_exponent(a.sel(optimizer=opt), "svag_")
        rows.append((p, lo, hi))
        noisy = f"smallest distance {fmt(signal)}x its seed-noise floor (needs {fmt(min_signal)}x)"
        verdict, reason = (NOT_RESOLVED, noisy) if not signal >= min_signal else judge_positive(lo, hi, max_half_width)
        parts.append((opt, verdict, reason))
    p, lo, hi = min(rows)
    return Measurement(quantity, p, criterion, *combine(parts), lo, hi)
