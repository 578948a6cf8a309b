"""Learning-rate and weight-decay schedules, given per step.

A schedule is two float64 arrays, ``lr[t]`` and ``wd[t]``, the values applied by
update ``t`` (t = 0 .. total_steps-1). Precomputing them keeps the training loop free
of schedule logic and makes every schedule testable as plain numbers. This module is
torch-free so that config validation (run before any job) can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SCHEDULE_NAMES = ("constant", "step")


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
    """Per-step learning rate and weight decay (float64 arrays of equal length)."""

    lr: np.ndarray
    wd: np.ndarray

    def __post_init__(self):
        if self.lr.shape != self.wd.shape or self.lr.ndim != 1:
            raise ValueError("lr and wd must be 1-d arrays of the same length")

    def __len__(self) -> int:
        return len(self.lr)


def milestone_steps(spec: dict, steps_in_epoch: int) -> list[int]:
    """Milestones of a step schedule as step indices."""
    return [to_steps(m, spec["unit"], steps_in_epoch) for m in spec["milestones"]]


def build_schedule(spec: dict, steps_in_epoch: int, n_steps: int) -> Schedule:
    """The schedule described by a resolved ``schedule`` config entry."""
    name = spec["name"]
    t = np.arange(n_steps)
    lr = np.full(n_steps, float(spec["lr"]))
    wd = np.full(n_steps, float(spec["wd"]))
    if name == "constant":
        return Schedule(lr, wd)
    if name == "step":
        # Number of milestones passed at step t: the LR is lr * factor**k.
        k = np.zeros(n_steps, dtype=np.int64)
        for m in milestone_steps(spec, steps_in_epoch):
            k += t >= m
        return Schedule(lr * float(spec["factor"]) ** k, wd)
    raise ValueError(f"unknown schedule name {name!r}; allowed: {', '.join(SCHEDULE_NAMES)}")
