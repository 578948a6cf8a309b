"""Optimizers: torch.optim.SGD and torch.optim.Adam with the run's settings, and the SVAG
loss (the stochastic variance amplified gradient, Li, Malladi & Arora, NeurIPS 2021;
docs/science.md section 4).

SVAG with parameter l takes, per update, two independent minibatches and descends on
``c1*L(b1) + c2*L(b2)`` with ``c1,2 = (1 +- sqrt(2l-1))/2`` and LR ``eta/l``. Since
``c1 + c2 = 1`` the mean gradient is the full-batch one, and since ``c1^2 + c2^2 = l``
the noise covariance is ``l`` times SGD's: over ``l`` updates of LR ``eta/l`` the drift
is SGD's and the noise covariance too, so as l grows the iterates converge (weakly, with
error O(1/l)) to the Ito SDE of SGD. The schedule side (LR/l, boundaries x l) lives in
``engine.schedules.build_schedule(svag=l)``; the adaptive variant's betas and eps are
``engine.adaptive.adaptive_svag_hyperparameters``.

The two gradients cost one forward and one backward pass over the concatenated 2B
examples: the loss is a weighted sum of per-example losses, so one backward gives the
weighted gradient. Batch-norm layers normalize each half with its own statistics, as SGD
normalizes each of its batches (``per_batch_norm``).
"""

from __future__ import annotations

import contextlib
import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from lrdynamics.engine.adaptive import adaptive_svag_hyperparameters, is_adaptive


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


def svag_loss(model: nn.Module, x1, y1, x2, y2, l: int, forward=None) -> torch.Tensor:
    """``c1*L(b1) + c2*L(b2)``: one forward over both batches, per-batch BN statistics.
    ``forward``: how to call ``model`` (default: ``model`` itself; an ensemble member's
    ``functional_call`` of it)."""
    c1, c2 = svag_coefficients(l)
    n1 = len(y1)
    with per_batch_norm(model, [n1, len(y2)]):
        out = (forward or model)(torch.cat([x1, x2]))
    return c1 * F.cross_entropy(out[:n1], y1) + c2 * F.cross_entropy(out[n1:], y2)


def skip_dynamo_import() -> None:
    """Spare a job the import of ``torch._dynamo`` (1.5 s of its start-up on a 2-core CPU;
    ``make bench``: ``job_startup_seconds``), with ``optimizer_step``.

    torch.optim wraps some methods (``add_param_group``, ``state_dict``, ...) in
    ``torch._disable_dynamo``, whose first call imports torch._dynamo only to mark the method
    as one torch.compile must not trace, then caches the marked method on it. Nothing here is
    compiled, so each such method is cached as itself: the same calls, without the import.
    Where torch wraps them otherwise (another version) this does nothing.
    """
    wrapper_code = torch._compile._disable_dynamo(lambda: None).__code__
    for cls in (torch.optim.Optimizer, torch.optim.SGD, torch.optim.Adam):
        for attr in vars(cls).values():
            fn = getattr(attr, "__wrapped__", None)
            if fn is not None and getattr(attr, "__code__", None) is wrapper_code:
                if getattr(fn, "__dynamo_disable", None) is None:
                    setattr(fn, "__dynamo_disable", fn)


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``: the optimizer's own step function under ``torch.no_grad``.

    ``step`` is wrapped twice: for torch.compile (``_use_grad_for_differentiable``, which
    imports torch._dynamo on every call for a graph break, a no-op outside compilation) and
    for step hooks and the profiler (none here). The innermost function is the update
    itself, so the result is the same, bit for bit (tests/test_train.py).
    """
    with torch.no_grad():
        inspect.unwrap(type(optimizer).step)(optimizer)


def build_optimizer(params, optimizer: dict, lr: float) -> torch.optim.Optimizer:
    """torch.optim.SGD, or torch.optim.Adam for adam/rmsprop with adaptive SVAG's betas and
    eps for l = optimizer.svag (LR and WD are set per update from the schedule)."""
    skip_dynamo_import()
    if is_adaptive(optimizer):
        h = adaptive_svag_hyperparameters(
            lr, optimizer["beta1"], optimizer["beta2"], optimizer["eps"], optimizer["svag"]
        )
        return torch.optim.Adam(params, lr=lr, betas=(h["beta1"], h["beta2"]), eps=h["eps"])
    return torch.optim.SGD(params, lr=lr, momentum=optimizer["momentum"])


def momentum_buffer_square(optimizer: torch.optim.Optimizer, params) -> torch.Tensor | None:
    """|v|^2 of SGD's momentum buffers of ``params`` together, a float64 tensor on their
    device (no sync); None when they have none (no momentum, an adaptive optimizer)."""
    buffers = [optimizer.state[p].get("momentum_buffer") for p in params if p in optimizer.state]
    buffers = [b for b in buffers if b is not None]
    if not buffers:
        return None
    # one fused kernel for all tensors (clip_grad_norm_'s way): this runs every update
    return torch.stack(torch._foreach_norm(buffers)).double().pow(2).sum()
