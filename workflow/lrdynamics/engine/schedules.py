"""Learning-rate and weight-decay schedules, given per step.

A schedule is two float64 arrays, ``lr[t]`` and ``wd[t]``, the values applied by
update ``t`` (t = 0 .. total_steps-1). Precomputing them keeps the training loop free
of schedule logic and makes every schedule testable as plain numbers. This module is
torch-free (numpy only) so that config validation (run before any job) can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SCHEDULE_NAMES = ("constant", "step", "cosine", "exponential", "piecewise")
# The schedules that take milestones.
MILESTONE_SCHEDULES = ("step", "exponential", "piecewise")


def steps_per_epoch(n_train: int, batch_size: int, drop_last: bool) -> int:
    """Updates per pass over ``n_train`` examples (PyTorch DataLoader semantics)."""
    if drop_last:
        if n_train < batch_size:
            raise ValueError(
                f"training.drop_last is true but the training set ({n_train}) is "
                f"smaller than training.batch_size ({batch_size}): no full batch"
            )
        return n_train // batch_size
    return math.ceil(n_train / batch_size)


def total_steps(epochs: float, steps_in_epoch: int) -> int:
    """Number of updates in ``epochs`` epochs (fractional epochs round to a step)."""
    return max(1, round(epochs * steps_in_epoch))


def to_steps(value: float, unit: str, steps_in_epoch: int) -> int:
    """Convert a time in ``unit`` ('epoch' or 'step') to a step index."""
    if unit == "epoch":
        return round(value * steps_in_epoch)
    if unit == "step":
        return round(value)
    raise ValueError(f"unit must be 'epoch' or 'step', got {unit!r}")


@dataclass(frozen=True)
class Schedule:
    """Per-step learning rate and weight decay (float64 arrays of equal length).

    ``buffer_init`` is kappa where the momentum buffer must start at ``kappa * w0`` (None:
    PyTorch's zero start); ``scale`` is c_t (length T+1) where the run's weights are
    ``c_t`` times those of the schedule it is the exponential counterpart of (None: not one).
    """

    lr: np.ndarray
    wd: np.ndarray
    buffer_init: float | None = None
    scale: np.ndarray | None = None

    def __post_init__(self):
        if self.lr.shape != self.wd.shape or self.lr.ndim != 1:
            raise ValueError("lr and wd must be 1-d arrays of the same length")

    def __len__(self) -> int:
        return len(self.lr)


def alpha_root(lr: float, wd: float, momentum: float) -> float:
    """The larger root of x^2 - (1 + gamma - eta*lambda) x + gamma = 0 (Li & Arora 2020).

    With gamma = 0 it is 1 - eta*lambda. Exp LR eta*alpha^(-2t-1) without WD is SGD with
    (eta, lambda, gamma) in function space; the weights differ by the factor alpha^(-t).
    """
    b = 1.0 + momentum - lr * wd
    disc = b * b - 4.0 * momentum
    root = (b + math.sqrt(disc)) / 2.0 if disc >= 0 else -1.0
    if root <= 0:
        raise ValueError(f"no positive real root for lr={lr}, wd={wd}, momentum={momentum}: lr*wd too large")
    return root


def exponential_counterpart(lr: np.ndarray, wd: np.ndarray, momentum: float) -> Schedule:
    """The schedule without weight decay that is SGD with (lr_t, wd_t, momentum) exactly.

    For a scale-invariant loss, substituting w~_t = c_t w_t into SGD (PyTorch semantics)
    without WD and matching it term by term with SGD with WD gives, for r_t = c_{t+1}/c_t
    and rho_t = lr_t / lr_{t-1}:

        1/r_t = 1 + gamma*rho_t*(1 - r_{t-1}) - lr_t*wd_t      (t >= 1),  r_0 = 1/alpha_0
        lr~_t = lr_t * c_t * c_{t+1},  c_0 = 1
        v~_0 = kappa * w_0,  kappa = (1 - r_0 (1 - lr_0 wd_0)) / (lr~_0 gamma)

    The constant case gives r_t = 1/alpha and lr~_t = lr alpha^(-2t-1), the paper's Exp LR,
    and kappa = -(1 - alpha)/(lr alpha); a step-decay schedule gives TEXP, in an exact form
    whose ratio relaxes to alpha_I^-2 within a few steps of each boundary (the recursion
    contracts by ~gamma per step); a cosine schedule gives the exponential cosine.
    """
    lr, wd = np.asarray(lr, dtype=np.float64), np.asarray(wd, dtype=np.float64)
    n = len(lr)
    r = np.empty(n)
    r[0] = 1.0 / alpha_root(lr[0], wd[0], momentum)
    for t in range(1, n):
        r[t] = 1.0 / (1.0 + momentum * (lr[t] / lr[t - 1]) * (1.0 - r[t - 1]) - lr[t] * wd[t])
    c = np.concatenate([[1.0], np.cumprod(r)])
    lr_tilde = lr * c[:-1] * c[1:]
    kappa = (1.0 - r[0] * (1.0 - lr[0] * wd[0])) / (lr_tilde[0] * momentum) if momentum > 0 else None
    return Schedule(lr_tilde, np.zeros(n), buffer_init=kappa, scale=c)


def milestone_steps(spec: dict, steps_in_epoch: int) -> list[int]:
    """Milestones of a step schedule as step indices."""
    return [to_steps(m, spec["unit"], steps_in_epoch) for m in spec["milestones"]]


def decays_passed(spec: dict, steps_in_epoch: int, t: np.ndarray) -> np.ndarray:
    """Number of milestones passed at each (effective) time ``t`` (the exponent of ``factor``)."""
    k = np.zeros(len(t), dtype=np.int64)
    for m in milestone_steps(spec, steps_in_epoch):
        k += t >= m
    return k


def piece_factors(factors: list, n_pieces: int, piece: np.ndarray) -> np.ndarray:
    """The multiplier of each update from a piecewise schedule's ``lr_factors`` or
    ``wd_factors`` (``piece``: the milestones passed by each update; an empty list: 1)."""
    if not factors:
        return np.ones(len(piece))
    if len(factors) != n_pieces:
        raise ValueError(f"{len(factors)} factors for {n_pieces} pieces (one more than the milestones)")
    return np.asarray(factors, dtype=np.float64)[piece]


def base_wd(spec: dict, momentum: float) -> float:
    """The weight decay of a schedule; with ``intrinsic_lr`` set, lambda = lambda_e (1-gamma)/eta."""
    if spec["intrinsic_lr"] is not None:
        return spec["intrinsic_lr"] * (1.0 - momentum) / spec["lr"]
    return float(spec["wd"])


def warmup_factor(spec: dict, steps_in_epoch: int, t: np.ndarray) -> np.ndarray:
    """The LR multiplier of the exponential warm-up at (effective) time ``t``.

    ``start**(1 - t/T)`` for t < T (T = ``warmup`` in ``unit``s), then 1: a geometric
    ramp from ``warmup_start`` times the LR, per step (the adaptive-SDE code ramps the
    same curve per epoch).
    """
    length = spec["warmup"]
    if not length:
        return np.ones(len(t))
    n = max(1, to_steps(length, spec["unit"], steps_in_epoch))
    return np.where(t < n, float(spec["warmup_start"]) ** (1.0 - t / n), 1.0)


def build_schedule(
    spec: dict,
    steps_in_epoch: int,
    n_steps: int,
    momentum: float = 0.0,
    svag: int = 1,
    updates_per_step: int | None = None,
) -> Schedule:
    """The schedule described by a resolved ``schedule`` config entry.

    constant: lr, wd. step: the decay (``factor`` at each milestone) on ``decay_target``.
    cosine: ``decay_target`` follows (1 + cos(pi t/T))/2. exponential: the Exp LR
    lr*alpha^(-2t-1) of (lr, wd, momentum), WD 0, times ``factor`` at each milestone (the
    paper's "instant decays"), momentum buffer from zero. piecewise: piecewise constant,
    lr*lr_factors[i] and wd*wd_factors[i] in piece i (from the i-th milestone on; an empty
    list: 1 throughout). ``wd_as_exp_lr`` replaces any of them but exponential by its exact
    exponential counterpart (no WD; see ``exponential_counterpart``).

    ``svag = l > 1`` gives the SVAG schedule (Li, Malladi & Arora 2021): ``l * n_steps``
    updates with LR lr/l, every boundary (milestone, cosine period) at l times its step, so
    update ``s`` happens at effective time ``s/l`` (``steps_in_epoch``/``n_steps`` stay the
    effective ones). The Exp LR of SVAG is that of (lr/l, wd), which grows as much per
    effective step as the plain one. ``updates_per_step`` (default l) is l^2 for adaptive
    SVAG: l^2 updates per effective step, still with LR lr/l (``engine.adaptive``).
    ``warmup`` multiplies the LR by ``warmup_factor`` (not with the exponential schedule).
    """
    name = spec["name"]
    if name not in SCHEDULE_NAMES:
        raise ValueError(f"unknown schedule name {name!r}; allowed: {', '.join(SCHEDULE_NAMES)}")
    if svag < 1 or int(svag) != svag:
        raise ValueError(f"the SVAG parameter l must be an integer >= 1, got {svag!r}")
    m = svag if updates_per_step is None else updates_per_step
    n_updates = n_steps * m
    s = np.arange(n_updates)
    t = s / m  # effective time of each update
    lr = np.full(n_updates, float(spec["lr"]) / svag)
    wd = np.full(n_updates, base_wd(spec, momentum))
    if name == "exponential":
        alpha = alpha_root(lr[0], wd[0], momentum)
        instant_decays = float(spec["factor"]) ** decays_passed(spec, steps_in_epoch, t)
        lr = lr * alpha ** (-2.0 * s - 1.0) * instant_decays
        return Schedule(lr, np.zeros(n_updates))
    if name == "piecewise":
        piece, n_pieces = decays_passed(spec, steps_in_epoch, t), len(spec["milestones"]) + 1
        lr = lr * piece_factors(spec["lr_factors"], n_pieces, piece)
        wd = wd * piece_factors(spec["wd_factors"], n_pieces, piece)
        shape = np.ones(n_updates)
    elif name == "step":
        shape = float(spec["factor"]) ** decays_passed(spec, steps_in_epoch, t)
    elif name == "cosine":
        shape = 0.5 * (1.0 + np.cos(np.pi * t / n_steps))
    else:
        shape = np.ones(n_updates)
    if spec["decay_target"] == "wd":
        wd = wd * shape
    else:
        lr = lr * shape
    lr = lr * warmup_factor(spec, steps_in_epoch, t)
    if spec["wd_as_exp_lr"]:
        return exponential_counterpart(lr, wd, momentum)
    return Schedule(lr, wd)
