"""The scale-invariant toy (numpy, float64, seconds): ``results/analysis/scale_invariant_toy.nc``.

``scale_invariant_gd``: full-batch GD with weight decay on L(x, y) = x^2 / (x^2 + y^2), the
intrinsic-LR paper's example against "GD ~ gradient flow" (docs/science.md section 3).
The loss is scale-invariant, so its gradient (orthogonal to w) has size ~ 1/|w|. Without WD,
|w| only grows and GD converges. With WD, |w| shrinks until the effective LR eta/|w|^2 is
too large for the curvature, GD overshoots, the gradient step inflates |w|, and the cycle
repeats: the loss never settles.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import file_attributes
from lrdynamics.studies.intrinsic_lr import REFERENCE


def scale_invariant_loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
    x, y = w
    r2 = x * x + y * y
    return x * x / r2, np.array([2 * x * y * y, -2 * x * x * y]) / (r2 * r2)


def scale_invariant_gd(lr: float, wd: float, steps: int, w0=(1.0, 1.0)) -> dict[str, np.ndarray]:
    """GD with coupled WD; returns loss, weight norm and effective LR at every step."""
    w = np.asarray(w0, dtype=np.float64).copy()
    out = {k: np.empty(steps + 1) for k in ("loss", "weight_norm", "effective_lr")}
    for t in range(steps + 1):
        loss, grad = scale_invariant_loss_and_grad(w)
        norm = float(np.linalg.norm(w))
        out["loss"][t], out["weight_norm"][t], out["effective_lr"][t] = loss, norm, lr / norm**2
        if t < steps:
            w = w - lr * (grad + wd * w)
    return out


def scale_invariant_dataset(lr: float, wds: list[float], steps: int) -> xr.Dataset:
    """GD from (1, 1) with each weight decay of ``wds``: loss, norm and effective LR per step."""
    runs = [scale_invariant_gd(lr=lr, wd=wd, steps=steps) for wd in wds]
    units = {"loss": "1", "weight_norm": "1", "effective_lr": "1"}
    return xr.Dataset(
        {
            k: (("wd", "step"), np.stack([r[k] for r in runs]), {"long_name": k.replace("_", " "), "units": units[k]})
            for k in units
        },
        coords={"wd": wds, "step": np.arange(steps + 1)},
        attrs={
            **file_attributes(f"Full-batch GD on x^2/(x^2+y^2) from (1, 1), lr {lr}", REFERENCE, __name__),
            "lr": lr,
        },
    )


def noisy_sphere_sgd(lr: float, wd: float, momentum: float, steps: int, dim: int = 30, noise: float = 1.0,
                     curvature: float = 0.0, seed: int = 0) -> dict:  # fmt: skip
    """PyTorch-style SGD (coupled WD, momentum buffer v) on a scale-invariant loss with
    known noise, where the equilibrium predictions of ``equilibrium`` can be checked.

    The loss is L(w) = curvature/2 * |u_S|^2, u = w/|w| and S the first half of the
    coordinates (a valley of sharpness ``curvature`` on the unit sphere); the minibatch
    gradient is its gradient plus noise xi/|w|, both projected orthogonal to w (xi ~ N(0,
    noise^2 I)): every gradient is orthogonal to w and scales as 1/|w|, as a normalized
    net's, and |w|^2 tr(Sigma_B) = noise^2 (dim - 1) exactly (the signal's share of
    |g_B|^2 grows with ``curvature``). Returns the time averages over the second half of
    the steps of |w|^2, |v|^2, the per-step angle and |w|^2 |g_B|^2 (``g2w2``), and the
    true ``noise_sigma2`` = |w|^2 tr(Sigma_B).
    """
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim)
    v = np.zeros(dim)
    sharp = np.arange(dim) < dim // 2
    keep = {k: 0.0 for k in ("w2", "v2", "angle", "g2w2")}
    count = 0
    for t in range(steps):
        norm2 = w @ w
        u = w / np.sqrt(norm2)
        grad = np.where(sharp, curvature * u, 0.0) + rng.normal(0, noise, dim)
        grad = (grad - (grad @ u) * u) / np.sqrt(norm2)  # orthogonal to w, ~ 1/|w|
        v = momentum * v + grad + wd * w
        new = w - lr * v
        if t >= steps // 2:
            count += 1
            keep["w2"] += new @ new
            keep["v2"] += v @ v
            keep["g2w2"] += (grad @ grad) * norm2
            cos = np.clip(new @ w / np.sqrt((new @ new) * norm2), -1.0, 1.0)
            keep["angle"] += np.arccos(cos)
        w = new
    out = {k: x / count for k, x in keep.items()}
    out["noise_sigma2"] = noise**2 * (dim - 1)
    return out
