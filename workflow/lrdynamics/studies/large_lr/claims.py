"""The large-LR claims of the ledger (``lrdynamics.studies.ledger``; criteria and their
reasons in docs/science.md section 8), from ``eos.nc``, ``catapult_toy.nc`` and
``balancing_toy.nc``."""

from __future__ import annotations

import numpy as np

from lrdynamics.studies.large_lr.catapult import CATAPULT_OUTCOMES
from lrdynamics.studies.large_lr.eos import OUTCOMES
from lrdynamics.studies.ledger import CONFIRMED, NOT_CONFIRMED, Measurement, fmt, not_measured

# Bad regularity (Wang, Xu, Zhao & Tao 2023): the square loss on homogeneous activations
# without normalization, whose loss and gradient grow polynomially at large residuals.
BAD_ACTIVATIONS = ("relu", "cubic_relu")
BIASES = ("catapult_then_eos", "catapult", "eos")


def _fraction(matches: list[bool], quantity: str, criterion: str, misses: list[str]) -> Measurement:
    value = float(np.mean(matches))
    if all(matches):
        return Measurement(quantity, value, criterion, CONFIRMED)
    return Measurement(quantity, value, criterion, NOT_CONFIRMED, "; ".join(misses))


def edge_of_stability(analyses, *, band: float):
    """Runs started below 2/lr (c < 1): the sharpness rises from S0 to 2/lr (progressive
    sharpening: ``reached_eos``) and its late median is within 1 +- band of 2/lr (the edge)."""
    eos = analyses["eos"]
    quantity = "largest |late sharpness / (2/lr) - 1| of the runs started below 2/lr"
    criterion = f"every such run reaches 2/lr and its late median ratio is within 1 +- {fmt(band)}"
    below = np.flatnonzero(eos.initial_sharpness.values < eos.two_over_lr.values)
    if not len(below):
        return not_measured(quantity, criterion, "no GD run started below 2/lr (lr = c x 2/S0 with c < 1)")
    runs = eos.isel(run=below)
    ratio = runs.late_sharpness_ratio.values
    misses = [f"run {i}: late ratio {fmt(r)}" for i, r in zip(below, ratio) if not abs(r - 1) <= band]
    misses += [f"run {i}: never reached 2/lr" for i, ok in zip(below, runs.reached_eos.values) if not ok]
    multiples = runs.initial_sharpness.values / runs.two_over_lr.values
    criterion += f" ({len(below)} runs, c = {', '.join(fmt(c) for c in multiples)})"
    value = float(np.nanmax(np.abs(ratio - 1))) if np.isfinite(ratio).any() else np.nan
    m = _fraction([not misses], quantity, criterion, misses)
    return Measurement(quantity, value, criterion, m.verdict, m.reason)


def catapult(analyses):
    """The square loss of the catapult toy: lazy for eta*lambda0 < 2, a catapult for
    2 < eta*lambda0 < 4, divergence above 4 (Lewkowycz et al. 2020)."""
    toy = analyses["catapult_toy"].sel(loss_function="square")
    quantity = "fraction of eta*lambda0 values with the predicted outcome (square loss)"
    criterion = "lazy below 2, catapult in (2, 4), diverged above 4, with >= 1 value in each range"
    x = toy.eta_lambda0.values
    predicted = np.where(x < 2, "lazy", np.where(x < 4, "catapult", "diverged"))
    seen = np.array([CATAPULT_OUTCOMES[int(o)] for o in toy.outcome.values])
    keep = (x != 2) & (x != 4)
    if len(set(predicted[keep])) < 3:
        return not_measured(quantity, criterion, "the eta*lambda0 grid does not cover all three ranges")
    misses = [f"{fmt(v)}: {s} (predicted {p})" for v, s, p in zip(x[keep], seen[keep], predicted[keep]) if s != p]
    return _fraction(list(seen[keep] == predicted[keep]), quantity, criterion, misses)


def balancing(analyses, *, max_ratio: float, min_small_ratio: float):
    """The scalar toy, square loss: GD at c = h L0 in (2, 4) that converges ends with
    | |x| - |y| | <= max_ratio x its initial value; below c = 2 GD keeps >= min_small_ratio
    of it (so the balancing is the large step's doing)."""
    toy = analyses["balancing_toy"].sel(loss_function="square", problem="scalar")
    quantity = "largest final / initial imbalance of the converged runs with 2 < c < 4"
    criterion = f"<= {fmt(max_ratio)} for each converged c in (2, 4), >= {fmt(min_small_ratio)} for c < 2"
    c = toy.c.values
    ratio = np.abs(toy.final_balance.values) / np.abs(toy.balance.isel(step=0).values)
    converged = toy.diverged_step.values < 0
    large, small = (c > 2) & (c < 4) & converged, c < 2
    if not large.any() or not small.any():
        return not_measured(quantity, criterion, "no converged run with 2 < c < 4, or none with c < 2")
    value = float(ratio[large].max())
    misses = [f"c {fmt(x)}: {fmt(r)}" for x, r in zip(c[large], ratio[large]) if r > max_ratio]
    misses += [f"c {fmt(x)} (small step): {fmt(r)}" for x, r in zip(c[small], ratio[small]) if r < min_small_ratio]
    m = _fraction([not misses], quantity, criterion, misses)
    return Measurement(quantity, value, criterion, m.verdict, m.reason)


def regularity(analyses):
    """The regularity grid (runs started above 2/lr): bad regularity (MSE with ReLU or cubic
    ReLU, no normalization) diverges; good regularity (Huber, tanh or BN) does not, and
    shows a catapult or the edge of stability."""
    eos = analyses["eos"]
    quantity = "fraction of large-LR runs (started above 2/lr) with the predicted outcome"
    criterion = "bad regularity diverges; good regularity converges with a catapult or at the edge"
    above = np.flatnonzero(eos.initial_sharpness.values > eos.two_over_lr.values)
    if not len(above):
        return not_measured(quantity, criterion, "no GD run started above 2/lr (lr = c x 2/S0 with c > 1)")
    runs = eos.isel(run=above)
    matches, misses = [], []
    for i in range(len(above)):
        r = runs.isel(run=i)
        bad = (
            str(r.loss.item()) == "mse" and str(r.activation.item()) in BAD_ACTIVATIONS and str(r.norm.item()) == "none"
        )
        outcome = OUTCOMES[int(r.outcome)]
        ok = outcome == "diverged" if bad else outcome in BIASES
        matches.append(ok)
        if not ok:
            what = (
                f"{r.loss.item()}/{r.activation.item()}/{r.norm.item()} c={fmt(float(r.lr * r.initial_sharpness / 2))}"
            )
            misses.append(f"{what}: {outcome} ({'bad' if bad else 'good'} regularity)")
    return _fraction(matches, quantity, criterion + f" ({len(above)} runs)", misses)
