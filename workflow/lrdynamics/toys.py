"""Toy models that run in seconds (numpy, float64).

``scale_invariant_gd``: full-batch GD with weight decay on L(x, y) = x^2 / (x^2 + y^2), the
intrinsic-LR paper's example against "GD ~ gradient flow" (papers.md section 2, experiment 1).
The loss is scale-invariant, so its gradient (orthogonal to w) has size ~ 1/|w|. Without WD,
|w| only grows and GD converges. With WD, |w| shrinks until the effective LR eta/|w|^2 is
too large for the curvature, GD overshoots, the gradient step inflates |w|, and the cycle
repeats: the loss never settles.
"""

from __future__ import annotations

import numpy as np


def scale_invariant_loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
    x, y = w
    r2 = x * x + y * y
    return x * x / r2, np.array([2 * x * y * y, -2 * x * x * y]) / (r2 * r2)


def scale_invariant_gd(w0=(1.0, 1.0), lr: float = 0.1, wd: float = 0.0, steps: int = 2000) -> dict[str, np.ndarray]:
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
