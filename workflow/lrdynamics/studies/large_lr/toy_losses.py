"""Scalar losses of the large-LR toy models, as (value, derivative) of the residual r.

Their regularity is what docs/science.md section 6 is about: the square loss has a constant
second derivative, the Huber loss's gradient stops growing past ``delta`` (good
regularity), the quartic loss's gradient grows as r^3 (bad regularity).
"""

from __future__ import annotations

import numpy as np

TOY_LOSSES = ("square", "huber", "quartic")


def toy_loss(name: str, huber_delta: float):
    """``(value, derivative, second_derivative)`` functions of the residual, numpy-vectorized."""
    d = huber_delta
    if name == "square":
        return (lambda r: 0.5 * r**2), (lambda r: r), (lambda r: np.ones_like(r))
    if name == "huber":
        return (
            (lambda r: np.where(np.abs(r) <= d, 0.5 * r**2, d * (np.abs(r) - 0.5 * d))),
            (lambda r: np.clip(r, -d, d)),
            (lambda r: (np.abs(r) <= d).astype(np.float64)),
        )
    if name == "quartic":
        return (lambda r: 0.25 * r**4), (lambda r: r**3), (lambda r: 3 * r**2)
    raise ValueError(f"unknown toy loss {name!r}; allowed: {', '.join(TOY_LOSSES)}")
