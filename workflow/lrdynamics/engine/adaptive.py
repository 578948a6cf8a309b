"""Adaptive methods: RMSprop and Adam, their square-root scaling rule and their SVAG
(Malladi, Lyu, Panigrahi & Arora, On the SDEs and Scaling Rules for Adaptive Gradient
Algorithms, NeurIPS 2022).

RMSprop here is Adam with beta1 = 0, bias correction kept (the paper's code); both use
coupled weight decay (``torch.optim.Adam``'s ``weight_decay``: lambda*w added to the
gradient before the moments). The SDE of RMSprop/Adam lives on the time scale
t = k*eta^2 with c = (1-beta)/eta^2 held fixed, which is where both transforms below
come from:

- **square-root scaling rule**: batch B -> kappa*B keeps the SDE when
  eta -> sqrt(kappa)*eta, 1-beta -> kappa*(1-beta) (each beta), eps -> eps/sqrt(kappa),
  with the same number of epochs (so kappa times fewer steps);
- **adaptive SVAG** with parameter l: LR eta/l, 1-beta -> (1-beta)/l^2, eps -> eps*l,
  l^2 times as many updates, each on the SVAG loss with coefficients
  (1 +- sqrt(2l^2-1))/2 (noise covariance l^2 times SGD's per update).

Plain Python: the config resolution (``lrdynamics.config``, imported by the Snakefile and
so by every job) applies the scaling rule (docs/science.md section 5).
"""

from __future__ import annotations

import math

ADAPTIVE_OPTIMIZERS = ("adam", "rmsprop")
# beta1 when the config leaves it null: Adam's usual 0.9; RMSprop has no first moment.
DEFAULT_BETA1 = {"adam": 0.9, "rmsprop": 0.0}


def is_adaptive(optimizer: dict) -> bool:
    return optimizer["name"] in ADAPTIVE_OPTIMIZERS


def scaled_beta(beta: float, factor: float) -> float:
    """The beta with 1 - beta multiplied by ``factor`` (beta = 0 stays 0: no moment)."""
    if beta == 0.0:
        return 0.0
    out = 1.0 - factor * (1.0 - beta)
    if not 0.0 <= out < 1.0:
        raise ValueError(
            f"1 - beta = {1.0 - beta:g} times {factor:g} gives beta = {out:g}, outside [0, 1): "
            "start from a beta closer to 1 or use a smaller batch-size ratio"
        )
    return out


def sqrt_scaling_rule(lr: float, beta1: float, beta2: float, eps: float, kappa: float) -> dict:
    """Hyperparameters at kappa times the batch size under the square-root rule."""
    if kappa <= 0:
        raise ValueError(f"kappa must be > 0, got {kappa}")
    root = math.sqrt(kappa)
    return {
        "lr": lr * root,
        "beta1": scaled_beta(beta1, kappa),
        "beta2": scaled_beta(beta2, kappa),
        "eps": eps / root,
    }


def adaptive_svag_hyperparameters(lr: float, beta1: float, beta2: float, eps: float, l: int) -> dict:
    """Per-update hyperparameters of adaptive SVAG with parameter l (l = 1: unchanged)."""
    if l < 1 or int(l) != l:
        raise ValueError(f"the SVAG parameter l must be an integer >= 1, got {l!r}")
    return {
        "lr": lr / l,
        "beta1": scaled_beta(beta1, 1.0 / l**2),
        "beta2": scaled_beta(beta2, 1.0 / l**2),
        "eps": eps * l,
    }


def updates_per_step(optimizer: dict) -> int:
    """Optimizer updates per effective step: l for SGD's SVAG, l^2 for adaptive SVAG."""
    l = int(optimizer["svag"])
    return l * l if is_adaptive(optimizer) else l
