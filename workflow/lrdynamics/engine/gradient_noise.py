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

``estimator: per_example`` (after the adaptive-SDE authors' code, Malladi et al. 2022,
``cifar_main.py``: ``Variancegradient`` on a loader of batch size 1 sampled with
replacement, 1000 samples, the model in train mode): ``samples`` single examples drawn
uniformly with replacement (augmented as in training), their gradients g_1..g_S taken at
once with ``torch.func`` (vmap over the gradient of the one-example loss), and

    G     = (S |mean_i g_i|^2 - mean_i |g_i|^2)/(S - 1)   unbiased |grad L|^2
    N     = sum_i |g_i|^2/(S - 1) - S |mean_i g_i|^2/(S - 1)  unbiased tr Sigma_1 (theirs)
    mean_i |g_i|                                          their "Mean Grad norm"

so tr Sigma_1 is measured directly and ``tr Sigma_B = tr Sigma_1 (n - B)/(B (n - 1))`` is
the one it implies at the run's B. Their signal-to-noise ratio is ``(mean_i |g_i|)^2 /
tr Sigma_1`` (the mean of the single-example gradient *norms*, squared, not |grad L|^2).
"""

from __future__ import annotations

import logging
import math
import time

import torch
from torch.func import functional_call, grad, vmap

from lrdynamics.engine.models import kept_normalization_statistics

log = logging.getLogger(__name__)

ESTIMATORS = ("minibatch", "per_example")
# The adaptive-SDE authors' default number of single-example gradients per measurement
# (cifar_main.py --num_variance_measurements).
EXAMPLE_SAMPLES = 1000
# Single-example gradients taken in one vmapped call (their (chunk, P) rows are held at once).
EXAMPLE_CHUNK = 64


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


def noise_samples(estimator: str, samples: int | None) -> int:
    """Single-example gradients per measurement of ``per_example``: as configured, else the
    authors' 1000."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown gradient noise estimator {estimator!r} (one of {', '.join(ESTIMATORS)})")
    return samples if samples is not None else EXAMPLE_SAMPLES


def example_signal_and_noise(chunks) -> tuple[float, float, float]:
    """(G, tr Sigma_1, mean_i |g_i|) from an iterable of (c, P) chunks of single-example
    gradients g_i drawn independently (with replacement): the unbiased estimates of
    ``signal_and_noise`` over all the rows, and the mean gradient norm (float64 sums)."""
    total, norms, mean, num = 0.0, 0.0, None, 0
    for g in chunks:
        g = g.double()
        sq = (g * g).sum(-1)
        total, norms = total + float(sq.sum()), norms + float(sq.sqrt().sum())
        mean = g.sum(0) if mean is None else mean.add_(g.sum(0))
        num += g.shape[0]
    if num < 2:
        raise ValueError("the unbiased estimator needs at least two single-example gradients")
    total, mean = total / num, mean / num
    signal = (num * float(mean @ mean) - total) / (num - 1)
    return signal, total - signal, norms / num


def per_example_noise(batch_noise: float, batch_size: int, n_train: int) -> float:
    """tr Sigma_1 from tr Sigma_B, for B-subsets drawn without replacement from n examples."""
    if batch_size >= n_train:
        return math.nan  # the full batch has no sampling noise to measure
    return batch_noise * batch_size * (n_train - 1) / (n_train - batch_size)


def batch_noise_from_example(noise: float, batch_size: int, n_train: int) -> float:
    """tr Sigma_B from tr Sigma_1 (the inverse of ``per_example_noise``; 0 for the full batch)."""
    if batch_size >= n_train:
        return 0.0
    return noise * (n_train - batch_size) / (batch_size * (n_train - 1))


def critical_batch_size(noise: float, signal: float, c: float = math.sqrt(2)) -> float:
    """B* = (C^2 - 1) tr Sigma_1 / G (inf when the estimated signal is not positive)."""
    return (c * c - 1) * noise / signal if signal > 0 else math.inf


def minibatch_gradients(model, loss_fn, batches, params):
    """Flattened gradient of ``loss_fn(model(x), y)`` for each (x, y), in train mode."""
    for x, y in batches:
        grads = torch.autograd.grad(loss_fn(model(x), y), params)
        yield torch.cat([g.flatten() for g in grads])


def example_gradients(model, loss_fn, x, y, params, chunk: int = EXAMPLE_CHUNK):
    """The flattened gradient of ``loss_fn(model(x_i[None]), y_i[None])`` of each example,
    (c, P) per chunk of ``chunk`` examples, with ``torch.func`` (``vmap`` over ``grad`` of the
    one-example loss through ``functional_call``), in the model's current mode, ``params``
    in their order (other parameters held fixed).

    In train mode a normalization layer sees a batch of one, as in the authors' loader of
    batch size 1 (BatchNorm: the statistics of the one image over its positions); the
    running statistics each example would update are per-example copies, discarded, so the
    model's own buffers are untouched.
    """
    wanted = {id(p) for p in params}
    names = {id(p): name for name, p in model.named_parameters()}
    order = [names[id(p)] for p in params]
    fixed = {name: p.detach() for name, p in model.named_parameters() if id(p) not in wanted}
    buffers = dict(model.named_buffers())

    def one_loss(trainable, own_buffers, xi, yi):
        out = functional_call(model, (trainable, fixed, own_buffers), (xi.unsqueeze(0),), strict=False)
        return loss_fn(out, yi.unsqueeze(0))

    per_example = vmap(grad(one_loss), in_dims=(None, 0, 0, 0))
    trainable = {name: p.detach() for name, p in zip(order, params)}
    for start in range(0, len(y), chunk):
        xc, yc = x[start : start + chunk], y[start : start + chunk]
        copies = {k: v.detach().unsqueeze(0).expand(len(yc), *v.shape).clone() for k, v in buffers.items()}
        grads = per_example(trainable, copies, xc, yc)
        yield torch.cat([grads[name].flatten(1) for name in order], dim=1)


def measure_example_signal_and_noise(model, loss_fn, examples, params, chunk: int = EXAMPLE_CHUNK):
    """(G, tr Sigma_1, mean_i |g_i|) of ``model`` at its current weights over the single
    examples ``examples`` (one (x, y) pair of batch size 1 each, or one batch whose rows are
    the examples), in train mode as the authors measure; leaves the model as it was."""
    if not isinstance(examples, tuple):
        pairs = list(examples)
        examples = (torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]))
    with kept_normalization_statistics(model):
        model.train()
        return example_signal_and_noise(example_gradients(model, loss_fn, *examples, params, chunk))


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
    B*. ``estimator``: ``minibatch`` (the above) or ``per_example`` (``samples`` single
    examples drawn with replacement, ``noise_samples``; then ``batches`` is that count and
    each "minibatch" is one example). ``measure`` returns one row of the run file's noise
    variables (and ``example_gradient_norm``, NaN for ``minibatch``); ``seconds`` is the
    time spent measuring (kept out of a run's training speed).
    """

    def __init__(self, data, batch_size: int, crop: bool, flip: bool, generator, batches: int, threshold_c: float,
                 estimator: str = "minibatch", samples: int | None = None):  # fmt: skip
        self.data, self.B, self.crop, self.flip = data, batch_size, crop, flip
        self.generator, self.threshold_c, self.estimator = generator, threshold_c, estimator
        self.per_example = estimator == "per_example"
        self.batches = noise_samples(estimator, samples) if self.per_example else batches
        self.draw = 1 if self.per_example else batch_size  # examples per gradient
        self.seconds = 0.0

    def minibatches(self):
        """The ``batches`` minibatches of one measurement, each (images, labels): uniform
        B-subsets, or for ``per_example`` single examples drawn with replacement."""
        device = self.data.images.device
        for _ in range(self.batches):
            if self.per_example:
                idx = torch.randint(self.data.n, (1,), device=device, generator=self.generator)
            else:
                idx = torch.randperm(self.data.n, device=device, generator=self.generator)[: self.B]
            yield self.data.batch(idx, self.crop, self.flip, self.generator)

    def measure(self, model, params, loss_fn, gradient_scale: float = 1.0, step: int | None = None,
                weight_norm: float = math.nan) -> dict:  # fmt: skip
        """G, N_B, N = tr Sigma_1 and B* at the model's current weights (logged, with the
        effective ``step``). The gradients are multiplied by ``gradient_scale`` (those of
        the true weights when the stored ones are rescaled), so G and N_B by its square;
        ``weight_norm``: the true norm of the weight layers, recorded beside them."""
        tic = time.perf_counter()
        if self.per_example:
            signal, noise, norm = measure_example_signal_and_noise(model, loss_fn, self.minibatches(), params)
        else:
            (signal, noise), norm = measure_signal_and_noise(model, loss_fn, self.minibatches(), params), math.nan
        row = self.row(signal, noise, gradient_scale, weight_norm, time.perf_counter() - tic, norm)
        log.info(
            "step %s: gradient signal G %.4g, noise tr Sigma_1 %.4g, critical batch size %.4g (%d %s, %.1f s)",
            step, row["gradient_signal"], row["gradient_noise"], row["critical_batch_size"], self.batches,
            "examples" if self.per_example else "batches", time.perf_counter() - tic,
        )  # fmt: skip
        return row

    def row(self, signal: float, batch_noise: float, gradient_scale: float, weight_norm: float, seconds: float,
            example_norm: float = math.nan):  # fmt: skip
        """The noise row of a measurement of the stored weights' G and noise (``measure``; an
        ensemble measures every member at once and gives each its share of ``seconds``).
        ``batch_noise`` is tr Sigma at the meter's ``draw`` (N_B, or tr Sigma_1 for
        ``per_example``); ``example_norm``: mean_i |g_i| of ``per_example``."""
        signal, measured = signal * gradient_scale**2, batch_noise * gradient_scale**2
        n = self.data.n
        if self.per_example:
            noise, batch_noise = measured, batch_noise_from_example(measured, self.B, n)
        else:
            noise, batch_noise = per_example_noise(measured, min(self.B, n), n), measured
        self.seconds += seconds
        return {"gradient_signal": signal, "batch_gradient_noise": batch_noise, "gradient_noise": noise,
                "critical_batch_size": critical_batch_size(noise, signal, self.threshold_c),
                "noise_weight_norm": weight_norm, "example_gradient_norm": example_norm * gradient_scale}  # fmt: skip
