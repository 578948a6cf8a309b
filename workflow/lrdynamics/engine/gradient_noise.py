"""Gradient signal and noise, and the critical batch size they predict (docs/science.md
section 4; the linear-scaling-rule analysis is ``lrdynamics.studies.sde_validity.lsr``).

With ``num`` independent minibatch gradients g_1..g_num of batch size B (after the SVAG
authors' code):

    total = mean_i |g_i|^2                         E = |grad L|^2 + tr Sigma_B
    G     = (num |mean_i g_i|^2 - total)/(num - 1) unbiased |grad L|^2 (the signal)
    N_B   = total - G                              unbiased tr Sigma_B (the paper code's N)

Sigma_B is the covariance of a minibatch gradient: a uniform random B-subset of n
examples has Sigma_B = (n - B)/(B (n - 1)) Sigma_1, so the per-example noise is
``tr Sigma_1 = N_B * B (n - 1)/(n - B)``, a quantity that does not depend on B. The
linear scaling rule (B -> kB with LR -> kLR) keeps SGD near its SDE only while the
noise dominates; it is predicted to break near ``B* = (C^2 - 1) tr Sigma_1 / G``.
"""

from __future__ import annotations

import logging
import math
import time

import torch

from lrdynamics.engine.models import kept_normalization_statistics

log = logging.getLogger(__name__)


def noise_batches(batch_size: int, batches: int | None) -> int:
    """Minibatches per measurement: as configured, else the paper's max(200, 12800/B)."""
    return batches if batches is not None else max(200, math.ceil(12800 / batch_size))


def signal_and_noise(gradients) -> tuple:
    """(G, N_B) from an iterable of flattened minibatch gradients (float64 sums); of each
    row when they are (K, P), the gradients of K ensemble members."""
    total, mean, num = 0.0, None, 0
    for g in gradients:
        g = g.double()
        total = total + (g * g).sum(-1)
        mean = g.clone() if mean is None else mean.add_(g)
        num += 1
    if num < 2:
        raise ValueError("the unbiased estimator needs at least two minibatch gradients")
    total = total / num
    mean /= num
    signal = (num * (mean * mean).sum(-1) - total) / (num - 1)
    if signal.ndim:  # (K, P) gradients of K ensemble members: a pair of (K,) tensors
        return signal, total - signal
    return float(signal), float(total - signal)


def per_example_noise(batch_noise: float, batch_size: int, n_train: int) -> float:
    """tr Sigma_1 from tr Sigma_B, for B-subsets drawn without replacement from n examples."""
    if batch_size >= n_train:
        return math.nan  # the full batch has no sampling noise to measure
    return batch_noise * batch_size * (n_train - 1) / (n_train - batch_size)


def critical_batch_size(noise: float, signal: float, c: float = math.sqrt(2)) -> float:
    """B* = (C^2 - 1) tr Sigma_1 / G (inf when the estimated signal is not positive)."""
    return (c * c - 1) * noise / signal if signal > 0 else math.inf


def minibatch_gradients(model, loss_fn, batches, params):
    """Flattened gradient of ``loss_fn(model(x), y)`` for each (x, y), in train mode."""
    for x, y in batches:
        grads = torch.autograd.grad(loss_fn(model(x), y), params)
        yield torch.cat([g.flatten() for g in grads])


def measure_signal_and_noise(model, loss_fn, batches, params) -> tuple[float, float]:
    """(G, N_B) of ``model`` at its current weights over the given minibatches.

    Train mode (batch statistics, as SGD sees the loss); batch-norm running statistics
    are restored afterwards, so a measurement leaves the model exactly as it was.
    """
    with kept_normalization_statistics(model):
        model.train()
        return signal_and_noise(minibatch_gradients(model, loss_fn, batches, params))


class NoiseMeter:
    """The gradient-noise measurement of a run: independent uniform B-subsets of ``data``
    (each its own ``randperm``) with the run's augmentation, from a generator of its own,
    so that the training data order is untouched.

    ``batches``: minibatches per measurement (``noise_batches``); ``threshold_c``: the C of
    B*. ``measure`` returns one row of the run file's noise variables; ``seconds`` is the
    time spent measuring (kept out of a run's training speed).
    """

    def __init__(self, data, batch_size: int, crop: bool, flip: bool, generator, batches: int, threshold_c: float):
        self.data, self.B, self.crop, self.flip = data, batch_size, crop, flip
        self.generator, self.batches, self.threshold_c = generator, batches, threshold_c
        self.seconds = 0.0

    def minibatches(self):
        """The ``batches`` minibatches of one measurement, each (images, labels)."""
        for _ in range(self.batches):
            idx = torch.randperm(self.data.n, device=self.data.images.device, generator=self.generator)[: self.B]
            yield self.data.batch(idx, self.crop, self.flip, self.generator)

    def measure(self, model, params, loss_fn, gradient_scale: float = 1.0, step: int | None = None,
                weight_norm: float = math.nan) -> dict:  # fmt: skip
        """G, N_B, N = tr Sigma_1 and B* at the model's current weights (logged, with the
        effective ``step``). The gradients are multiplied by ``gradient_scale`` (those of
        the true weights when the stored ones are rescaled), so G and N_B by its square;
        ``weight_norm``: the true norm of the weight layers, recorded beside them."""
        tic = time.perf_counter()
        signal, batch_noise = measure_signal_and_noise(model, loss_fn, self.minibatches(), params)
        row = self.row(signal, batch_noise, gradient_scale, weight_norm, time.perf_counter() - tic)
        log.info(
            "step %s: gradient signal G %.4g, noise tr Sigma_1 %.4g, critical batch size %.4g (%d batches, %.1f s)",
            step, row["gradient_signal"], row["gradient_noise"], row["critical_batch_size"], self.batches,
            time.perf_counter() - tic,
        )  # fmt: skip
        return row

    def row(self, signal: float, batch_noise: float, gradient_scale: float, weight_norm: float, seconds: float):
        """The noise row of a measurement of the stored weights' G and N_B (``measure``; an
        ensemble measures every member at once and gives each its share of ``seconds``)."""
        signal, batch_noise = signal * gradient_scale**2, batch_noise * gradient_scale**2
        noise = per_example_noise(batch_noise, min(self.B, self.data.n), self.data.n)
        self.seconds += seconds
        return {"gradient_signal": signal, "batch_gradient_noise": batch_noise, "gradient_noise": noise,
                "critical_batch_size": critical_batch_size(noise, signal, self.threshold_c),
                "noise_weight_norm": weight_norm}  # fmt: skip
