"""The balancing toy of Wang, Chen, Zhao & Tao (2022), docs/science.md section 6:
``results/analysis/balancing_toy.nc``.

Matrix factorization min sum_ij l((X Y^T - A)_ij), X (n x d), Y (m x d); the scalar case
n = m = d = 1, A = 1 is l(xy - 1) with l(r) = r^2/2 the paper's 0.5 (1 - xy)^2. Gradient
flow conserves ||X||^2 - ||Y||^2; a GD step with step size h multiplies x^2 - y^2 by
(1 - h^2 l'(xy - 1)^2), and a minimum is stable only where its sharpness ~ x^2 + y^2 is
below 2/h. So from an unbalanced start (x0, y0 = 4, 0.1, L0 = x0^2 + y0^2), h = c / L0
with 2 < c < 4 must end balanced (|x| ~ |y|), c <= 2 keeps the imbalance, larger c
diverges. The Huber loss (slow growth) widens the window; the quartic loss narrows it.

Every value of c runs at once (numpy, float64, vectorized over the grid); the sharpness
is the top eigenvalue of the exact (tiny) Hessian.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import file_attributes
from lrdynamics.studies.large_lr.toy_losses import toy_loss

REFERENCE = "Wang, Chen, Zhao & Tao 2022, Large learning rate tames homogeneity"


def factorization_start(n: int, m: int, d: int, x_norm: float, y_norm: float, seed: int):
    """(X0, Y0, A): the scalar problem (4, 0.1, 1) when n = m = d = 1, else Gaussian
    factors scaled to Frobenius norms x_norm, y_norm and a target A with ||A||_F = 1."""
    if n == m == d == 1:
        return np.array([[x_norm]]), np.array([[y_norm]]), np.array([[1.0]])
    rng = np.random.default_rng(seed)
    x, y, a = rng.standard_normal((n, d)), rng.standard_normal((m, d)), rng.standard_normal((n, m))
    return x * x_norm / np.linalg.norm(x), y * y_norm / np.linalg.norm(y), a / np.linalg.norm(a)


def factorization_sharpness(x: np.ndarray, y: np.ndarray, a: np.ndarray, loss: str, huber_delta: float) -> np.ndarray:
    """Top Hessian eigenvalue of sum l(X Y^T - A) for a stack of (X, Y) (first axis)."""
    _, d1, d2 = toy_loss(loss, huber_delta)
    c, n, d = x.shape
    m = y.shape[1]
    r = np.einsum("cik,cjk->cij", x, y) - a
    # Jacobian of R_ij: dR_ij/dX_ik = Y_jk, dR_ij/dY_jk = X_ik (parameters: X then Y, row-major).
    jac = np.zeros((c, n, m, (n + m) * d))
    i, j, k = np.meshgrid(np.arange(n), np.arange(m), np.arange(d), indexing="ij")
    i, j, k = i.ravel(), j.ravel(), k.ravel()
    jac[:, i, j, i * d + k] = y[:, j, k]
    jac[:, i, j, n * d + j * d + k] = x[:, i, k]
    jac = jac.reshape(c, n * m, -1)
    hess = np.einsum("cqp,cq,cqs->cps", jac, d2(r).reshape(c, -1), jac)
    # plus l'(R_ij) times the second derivative of R_ij: 1 between X_ik and Y_jk.
    g = d1(r)[:, i, j]
    np.add.at(hess, (slice(None), i * d + k, n * d + j * d + k), g)
    np.add.at(hess, (slice(None), n * d + j * d + k, i * d + k), g)
    return np.linalg.eigvalsh(hess)[:, -1]


def balancing_gd(
    c_values,
    loss: str,
    shape: tuple[int, int, int],
    x_norm: float,
    y_norm: float,
    steps: int,
    seed: int,
    huber_delta: float,
    diverge_at: float = 1e8,
) -> dict[str, np.ndarray]:
    """GD with h = c / (x_norm^2 + y_norm^2) for each c, from the same start.

    Returns over (c, step): ``loss``, ``balance`` (||X||_F - ||Y||_F), ``sharpness``; per c
    the step size ``lr`` and ``diverged_step`` (-1: did not). NaN after divergence.
    """
    n, m, d = shape
    c = np.atleast_1d(np.asarray(c_values, dtype=np.float64))
    x0, y0, a = factorization_start(n, m, d, x_norm, y_norm, seed)
    lr = c / (x_norm**2 + y_norm**2)
    x, y = np.tile(x0, (len(c), 1, 1)), np.tile(y0, (len(c), 1, 1))
    value, grad, _ = toy_loss(loss, huber_delta)
    out = {k: np.full((len(c), steps + 1), np.nan) for k in ("loss", "balance", "sharpness")}
    diverged = np.full(len(c), -1)
    alive = np.ones(len(c), dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps + 1):
            r = np.einsum("cik,cjk->cij", x, y) - a
            nx, ny = np.linalg.norm(x, axis=(1, 2)), np.linalg.norm(y, axis=(1, 2))
            bad = alive & ~(np.isfinite(nx) & np.isfinite(ny) & (nx < diverge_at) & (ny < diverge_at))
            diverged[bad] = t
            alive &= ~bad
            if alive.any():
                out["loss"][alive, t] = value(r[alive]).sum((1, 2))
                out["balance"][alive, t] = nx[alive] - ny[alive]
                out["sharpness"][alive, t] = factorization_sharpness(x[alive], y[alive], a, loss, huber_delta)
            if t == steps:
                break
            g = grad(r)
            x, y = x - lr[:, None, None] * g @ y, y - lr[:, None, None] * g.transpose(0, 2, 1) @ x
    return {**out, "lr": lr, "diverged_step": diverged}


def balancing_dataset(
    c: list[float],
    losses: list[str],
    x_norm: float,
    y_norm: float,
    matrix_shape: list[int],
    steps: int,
    huber_delta: float,
    seed: int,
) -> xr.Dataset:
    """results/analysis/balancing_toy.nc: curves over (loss_function, problem, c, step) for
    the scalar problem and the matrix one of ``matrix_shape``."""
    c, losses = list(c), list(losses)
    problems = {"scalar": (1, 1, 1), "matrix": tuple(matrix_shape)}
    runs = [
        [balancing_gd(c, loss, shape, x_norm, y_norm, steps, seed, huber_delta) for shape in problems.values()]
        for loss in losses
    ]
    dims = ("loss_function", "problem", "c", "step")

    def stack(key):
        return np.stack([np.stack([r[key] for r in per_loss]) for per_loss in runs])

    balance = stack("balance")
    final = np.array(
        [[[row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan for row in b] for b in bl] for bl in balance]
    )
    data = {
        "loss": (dims, stack("loss"), "training loss sum l(XY^T - A)"),
        "balance": (dims, balance, "imbalance ||X||_F - ||Y||_F (|x| - |y| for the scalar problem)"),
        "sharpness": (dims, stack("sharpness"), "top Hessian eigenvalue"),
        "lr": (dims[1:3], np.stack([r["lr"] for r in runs[0]]), "GD step size h = c / L0"),
        "diverged_step": (dims[:3], stack("diverged_step"), "step of divergence (-1: none)"),
        "final_balance": (dims[:3], final, "||X||_F - ||Y||_F at the last finite step"),
    }
    return xr.Dataset(
        {k: (d, v, {"long_name": ln, "units": "1"}) for k, (d, v, ln) in data.items()},
        coords={"loss_function": losses, "problem": list(problems), "c": c, "step": np.arange(steps + 1)},
        attrs={
            **file_attributes(
                f"Balancing toy: GD from ||X|| = {x_norm}, ||Y|| = {y_norm}, h = c/L0", REFERENCE, __name__
            ),
            "L0": x_norm**2 + y_norm**2,
            "matrix_shape": list(matrix_shape),
        },
    )
