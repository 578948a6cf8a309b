"""Intrinsic LR, effective LR and angular update: the quantities the theory tracks.

For a scale-invariant weight w the gradient scales as 1/|w|, so a step of LR eta moves
the direction of w like a step of ``eta / |w|^2`` on the unit sphere (the effective LR),
and the per-step angle between w_t and w_{t+1} (the angular update) is what equilibrates
(Li, Lyu & Arora 2020; docs/science.md sections 1 and 3). What they equilibrate to is
``lrdynamics.studies.intrinsic_lr.equilibrium``.
"""

from __future__ import annotations

import torch


def intrinsic_lr(lr, wd, momentum: float = 0.0):
    """lambda_e = eta * lambda / (1 - gamma): the intrinsic LR, with momentum gamma."""
    return lr * wd / (1.0 - momentum)


def effective_lr(lr, weight_norm):
    """eta / |w|^2: the LR of the weight's direction on the unit sphere."""
    return lr / weight_norm**2


def unit_direction(w: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """w / |w|, flattened, in w's own dtype; with ``dim``, each slice along it (the rows of
    an ensemble's (K, D) weights) divided by its own norm."""
    w = w.detach()
    if dim is None:
        w = w.flatten()
        return w / torch.linalg.vector_norm(w)
    return w / torch.linalg.vector_norm(w, dim=dim, keepdim=True)


def chord_angle(u: torch.Tensor, v: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Angle between unit vectors u, v as 2*asin(|u - v| / 2), a tensor on their device.

    arccos of the cosine loses all digits below ~1e-4 rad in float32, where per-step
    updates live; the chord keeps them: rounding u and v costs ~eps/angle relative per
    coordinate, and those errors average out in the norm (float32 matches float64 to
    ~1e-6 relative at 1e-4 rad; tests/test_train.py). Returning a tensor lets the
    training loop sum it every update without a device sync. ``dim``: one angle per slice
    along it (an ensemble's members).
    """
    chord = torch.linalg.vector_norm(u - v, dim=dim)
    return 2.0 * torch.asin(torch.clamp(chord / 2.0, max=1.0))


def angle_between(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Angle (radians, a float64 tensor on the inputs' device) between two weight vectors."""
    return chord_angle(unit_direction(before.double()), unit_direction(after.double()))


def angular_update(before: torch.Tensor, after: torch.Tensor) -> float:
    """``angle_between`` as a Python float."""
    return float(angle_between(before, after))
