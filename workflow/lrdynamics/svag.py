"""SVAG: the stochastic variance amplified gradient (Li, Malladi & Arora, NeurIPS 2021).

SVAG with parameter l takes, per update, two independent minibatches and descends on
``c1*L(b1) + c2*L(b2)`` with ``c1,2 = (1 +- sqrt(2l-1))/2`` and LR ``eta/l``. Since
``c1 + c2 = 1`` the mean gradient is the full-batch one, and since ``c1^2 + c2^2 = l``
the noise covariance is ``l`` times SGD's: over ``l`` updates of LR ``eta/l`` the drift
is SGD's and the noise covariance too, so as l grows the iterates converge (weakly, with
error O(1/l)) to the Ito SDE of SGD. The schedule side (LR/l, boundaries x l) lives in
``schedules.build_schedule(svag=l)``.

The two gradients cost one forward and one backward pass over the concatenated 2B
examples: the loss is a weighted sum of per-example losses, so one backward gives the
weighted gradient. Batch-norm layers normalize each half with its own statistics, as SGD
normalizes each of its batches (``per_batch_norm``).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from lrdynamics.record import drop_hyperparameter_dims

SVAG_REFERENCE = (
    "Li, Malladi & Arora, On the Validity of Modeling SGD with Stochastic Differential Equations, NeurIPS 2021"
)


def svag_coefficients(l: int) -> tuple[float, float]:
    """(c1, c2) = ((1 + sqrt(2l-1))/2, (1 - sqrt(2l-1))/2): c1 + c2 = 1, c1^2 + c2^2 = l."""
    if l < 1:
        raise ValueError(f"SVAG needs l >= 1, got {l}")
    root = math.sqrt(2 * l - 1)
    return (1 + root) / 2, (1 - root) / 2


@contextlib.contextmanager
def per_batch_norm(model: nn.Module, sizes: list[int]):
    """Within the block, batch-norm layers normalize each consecutive chunk of ``sizes``
    examples with that chunk's own statistics (train mode), and update their running
    statistics once per chunk, in order: exactly as separate forward passes would.

    Every other layer sees the whole concatenated batch, which is where the saving is.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def chunked(module, original):
        def forward(x):
            if not module.training:
                return original(x)
            return torch.cat([original(part) for part in torch.split(x, sizes)])

        return forward

    for m in norms:
        m.forward = chunked(m, m.forward)
    try:
        yield
    finally:
        for m in norms:
            del m.forward  # back to the class's forward


def svag_loss(model: nn.Module, x1, y1, x2, y2, l: int) -> torch.Tensor:
    """``c1*L(b1) + c2*L(b2)``: one forward over both batches, per-batch BN statistics."""
    c1, c2 = svag_coefficients(l)
    n1 = len(y1)
    with per_batch_norm(model, [n1, len(y2)]):
        out = model(torch.cat([x1, x2]))
    return c1 * F.cross_entropy(out[:n1], y1) + c2 * F.cross_entropy(out[n1:], y2)


# --- analysis: convergence in l ------------------------------------------------------


def svag_analysis(runs: list[xr.Dataset]) -> xr.Dataset:
    """Test accuracy and loss per l at matched effective steps, and the distance of each
    l from the largest l (mean |difference| over the evaluation points, and at the end).

    Runs with the same l (several seeds) are averaged first; the runs of an experiment
    share the schedule and start, so their ``step`` (effective steps) coordinates agree.
    """
    by_l: dict[int, list[xr.Dataset]] = {}
    diverged: list[str] = []  # reported in the dataset and the figure, not averaged in
    for ds in runs:
        if ds.attrs["status"] != "completed":
            diverged.append(f"{ds.attrs['run']} (step {ds.attrs.get('diverged_step', '?')})")
            continue
        by_l.setdefault(int(ds.attrs["svag"]), []).append(drop_hyperparameter_dims(ds))
    if len(by_l) < 2:
        raise ValueError(f"the SVAG analysis needs completed runs with at least two values of l, got {sorted(by_l)}")
    ls = sorted(by_l)
    names = ["test_accuracy", "test_loss", "train_loss", "train_accuracy"]
    per_l = []
    for l in ls:
        group = [ds[names] for ds in by_l[l]]
        steps = group[0].step
        if any(not np.array_equal(g.step, steps) for g in group):
            raise ValueError(f"runs with l={l} were evaluated at different effective steps")
        per_l.append(xr.concat(group, dim="seed").mean("seed").expand_dims(l=[l]))
    curves = xr.concat(per_l, dim="l", join="inner", coords="minimal", compat="override")  # matched steps only
    reference = curves.sel(l=ls[-1])
    out = xr.Dataset(coords={"l": ("l", ls, {"long_name": "SVAG parameter l", "units": "1"})})
    out = out.assign_coords(step=curves.step)
    out["step"].attrs.update(long_name="effective steps (updates / l)", units="1")
    for name in names:
        out[name] = curves[name]
        out[name].attrs.update(long_name=f"{name.replace('_', ' ')} (mean over seeds)", units="1")
        diff = abs(curves[name] - reference[name])
        out[f"{name}_distance"] = diff.mean("step")
        out[f"{name}_distance"].attrs.update(
            long_name=f"mean over effective steps of |{name} - {name} at l={ls[-1]}|", units="1"
        )
        out[f"final_{name}_distance"] = diff.isel(step=-1)
        out[f"final_{name}_distance"].attrs.update(
            long_name=f"|{name} - {name} at l={ls[-1]}| at the last effective step", units="1"
        )
    out["seeds"] = ("l", [len(by_l[l]) for l in ls], {"long_name": "runs averaged", "units": "1"})
    out.attrs.update(
        title="SVAG convergence: curves per l at matched effective steps",
        references=SVAG_REFERENCE,
        reference_l=ls[-1],
        diverged_runs=", ".join(diverged) or "none",
    )
    return out
