"""The catapult toy of Lewkowycz et al. (2020), docs/science.md section 6:
``results/analysis/catapult_toy.nc``.

A two-layer linear net of width n on one example (x = 1, target y = 0):
f = v.u / sqrt(n), loss l(f - y), NTK lambda = (|u|^2 + |v|^2) / n. Gradient descent with
eta = c / lambda0 (``eta_lambda0`` = c). For the square loss the exact GD map is
f' = f (1 - eta lambda + eta^2 f^2 / n), lambda' = lambda + (eta f^2 / n)(eta lambda - 4):
c < 2 trains lazily; 2 < c < 4 the loss first grows, lambda falls until eta lambda < 2 and
training converges (the catapult); c > 4 diverges. The Huber and quartic losses test
the role of the loss's regularity.

Every value of c runs at once (numpy, float64, vectorized over the grid).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import file_attributes
from lrdynamics.studies.large_lr.toy_losses import toy_loss

REFERENCE = "Lewkowycz, Bahri, Dyer, Sohl-Dickstein & Gur-Ari 2020, The large learning rate phase"


def catapult_gd(
    eta_lambda0, loss: str, width: int, steps: int, seed: int, huber_delta: float, diverge_at: float = 1e12
) -> dict[str, np.ndarray]:
    """GD on the catapult model for each value of ``eta_lambda0`` (same init for all).

    Returns arrays over (c, step): ``loss``, ``f``, ``eta_lambda`` (eta x the NTK), and
    per c: ``lr``, ``diverged_step`` (-1 when it did not). After divergence (|f| or
    lambda past ``diverge_at``, or non-finite) the values are NaN.
    """
    c = np.atleast_1d(np.asarray(eta_lambda0, dtype=np.float64))
    rng = np.random.default_rng(seed)
    u0, v0 = rng.standard_normal(width), rng.standard_normal(width)
    lam0 = (u0 @ u0 + v0 @ v0) / width
    lr = c / lam0
    u, v = np.tile(u0, (len(c), 1)), np.tile(v0, (len(c), 1))
    value, grad, _ = toy_loss(loss, huber_delta)
    out = {k: np.full((len(c), steps + 1), np.nan) for k in ("loss", "f", "eta_lambda")}
    diverged = np.full(len(c), -1)
    alive = np.ones(len(c), dtype=bool)
    root = np.sqrt(width)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps + 1):
            f = np.einsum("ij,ij->i", u, v) / root
            lam = (np.einsum("ij,ij->i", u, u) + np.einsum("ij,ij->i", v, v)) / width
            bad = alive & ~(np.isfinite(f) & np.isfinite(lam) & (np.abs(f) < diverge_at) & (lam < diverge_at))
            diverged[bad] = t
            alive &= ~bad
            out["loss"][alive, t] = value(f[alive])
            out["f"][alive, t] = f[alive]
            out["eta_lambda"][alive, t] = lr[alive] * lam[alive]
            if t == steps:
                break
            g = grad(f)[:, None] / root  # dl/df * df/du = l'(f) v / sqrt(n)
            u, v = u - lr[:, None] * g * v, v - lr[:, None] * g * u
    return {**out, "lr": lr, "lambda0": np.full(len(c), lam0), "diverged_step": diverged}


def catapult_summary(run: dict[str, np.ndarray], converged_loss: float = 1e-6) -> dict[str, np.ndarray]:
    """Per c: spike height (max loss / initial loss), its step, final eta*lambda, and the
    outcome: 0 lazy (converged, no rise of the loss), 1 catapult (converged after a rise),
    2 diverged, 3 not converged within the steps."""
    loss = run["loss"]
    first = loss[:, 0]
    peak = np.nanmax(loss, axis=1)
    spike = peak / first
    final = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan for row in loss])
    final_eta_lambda = np.array(
        [row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan for row in run["eta_lambda"]]
    )
    outcome = np.where(
        run["diverged_step"] >= 0, 2, np.where(final > converged_loss * first, 3, np.where(spike > 1.0, 1, 0))
    )
    return {
        "spike_height": spike,
        "spike_step": np.nanargmax(loss, axis=1),
        "final_loss": final,
        "final_eta_lambda": final_eta_lambda,
        "outcome": outcome,
    }


CATAPULT_OUTCOMES = ("lazy", "catapult", "diverged", "not_converged")


def catapult_dataset(
    eta_lambda0: list[float], losses: list[str], width: int, steps: int, seed: int, huber_delta: float
) -> xr.Dataset:
    """results/analysis/catapult_toy.nc: curves and summaries over (loss_function, eta_lambda0)."""
    c, losses = list(eta_lambda0), list(losses)
    runs = [catapult_gd(c, loss, width, steps, seed, huber_delta) for loss in losses]
    summaries = [catapult_summary(r) for r in runs]
    dims = ("loss_function", "eta_lambda0", "t")
    described = {
        "loss": ("training loss l(f - y)", dims, [r["loss"] for r in runs]),
        "f": ("network output f = v.u/sqrt(width)", dims, [r["f"] for r in runs]),
        "eta_lambda": ("lr x NTK lambda_t = lr (|u|^2+|v|^2)/width", dims, [r["eta_lambda"] for r in runs]),
        "diverged_step": ("step of divergence (-1: none)", dims[:2], [r["diverged_step"] for r in runs]),
        "spike_height": ("max loss / initial loss", dims[:2], [s["spike_height"] for s in summaries]),
        "spike_step": ("step of the max loss", dims[:2], [s["spike_step"] for s in summaries]),
        "final_loss": ("loss at the last finite step", dims[:2], [s["final_loss"] for s in summaries]),
        "final_eta_lambda": (
            "lr x lambda at the last finite step",
            dims[:2],
            [s["final_eta_lambda"] for s in summaries],
        ),
        "outcome": (
            "outcome code: " + ", ".join(f"{i} {o}" for i, o in enumerate(CATAPULT_OUTCOMES)),
            dims[:2],
            [s["outcome"] for s in summaries],
        ),
    }
    return xr.Dataset(
        {k: (d, np.stack(v), {"long_name": ln, "units": "1"}) for k, (ln, d, v) in described.items()},
        coords={"loss_function": losses, "eta_lambda0": c, "t": np.arange(steps + 1)},
        attrs={
            **file_attributes(
                f"Catapult toy: two-layer linear net of width {width} on one example, GD", REFERENCE, __name__
            ),  # fmt: skip
            "lambda0": float(runs[0]["lambda0"][0]),
            "huber_delta": huber_delta,
        },
    )
