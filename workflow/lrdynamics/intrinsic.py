"""Intrinsic LR, effective LR and angular update: the quantities the theory tracks.

For a scale-invariant weight w the gradient scales as 1/|w|, so a step of LR eta moves
the direction of w like a step of ``eta / |w|^2`` on the unit sphere (the effective LR),
and the per-step angle between w_t and w_{t+1} (the angular update) is what equilibrates
(Li, Lyu & Arora 2020; papers.md section 2).
"""

from __future__ import annotations

import math

import torch


def intrinsic_lr(lr, wd, momentum: float = 0.0):
    """lambda_e = eta * lambda / (1 - gamma): the intrinsic LR, with momentum gamma."""
    return lr * wd / (1.0 - momentum)


def effective_lr(lr, weight_norm):
    """eta / |w|^2: the LR of the weight's direction on the unit sphere."""
    return lr / weight_norm**2


def angular_update(before: torch.Tensor, after: torch.Tensor) -> float:
    """Angle (radians) between two weight vectors, accurate for tiny angles.

    Uses 2*asin(|u - v| / 2) on the unit vectors u, v (in float64): arccos of the cosine
    loses all digits below ~1e-4 rad in float32, where per-step updates live.
    """
    a, b = before.detach().double().flatten(), after.detach().double().flatten()
    u, v = a / a.norm(), b / b.norm()
    return 2.0 * math.asin(min(1.0, float((u - v).norm()) / 2.0))
