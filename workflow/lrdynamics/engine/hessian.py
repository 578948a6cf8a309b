"""Sharpness: the top eigenvalues of the Hessian of the training loss (docs/science.md section 6).

The Hessian is never formed: ``hessian_vector_product`` builds the gradient once with its
graph and differentiates ``grad . v`` for each vector (double backward, which works for
every loss and normalization layer; torch.func's forward-over-reverse fails for torch's
``huber_loss``). ``sharpness`` hands these products to ARPACK's implicitly restarted
Lanczos (``scipy.sparse.linalg.eigsh``), warm-started from the previous top eigenvector.
By default ``which="LA"``, the largest *algebraic* eigenvalues: the sharpness is the top
eigenvalue lambda_max of the Hessian, and the largest-magnitude eigenvalues (``"LM"``,
eigsh's default, which Cohen et al.'s ``src/utilities.py:lanczos`` uses) can include a
large negative one (a saddle-like direction, e.g. at init or with cross-entropy), which
is not the stability-relevant curvature. At the edge of stability the top positive
eigenvalue has the largest magnitude, so both agree there; ``which="LM"`` is kept to
reproduce their call. (Power iteration also finds the largest |lambda|, and crawls at
the edge of stability, where the top eigenvalues cluster.)

Batch norm is measured in train mode (batch statistics, as the loss that GD descends),
with the running statistics restored afterwards, so a measurement never changes the run.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from lrdynamics.engine.models import kept_normalization_statistics


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def hessian_vector_product(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor):
    """``(matvec, dim)``: v (flat, over the trainable parameters) -> H v of loss_fn(model(x), y).

    The forward pass and the first backward happen once here; each product is one more
    backward through that graph.
    """
    params = trainable_parameters(model)
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])

    def matvec(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(flat_grad, params, grad_outputs=v, retain_graph=True, allow_unused=True)
        return torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1) for h, p in zip(hv, params)])

    return matvec, flat_grad.numel()


def sharpness(
    model: torch.nn.Module,
    loss_fn,
    x: torch.Tensor,
    y: torch.Tensor,
    k: int = 1,
    v0: np.ndarray | None = None,
    tol: float = 1e-4,
    max_products: int = 2000,
    which: str = "LA",
) -> tuple[np.ndarray, np.ndarray, int]:
    """Top-``k`` Hessian eigenvalues (descending), their eigenvectors (dim x k) and the
    number of Hessian-vector products used.

    ``which``: ``"LA"`` the ``k`` largest algebraic eigenvalues (the sharpness), or ``"LM"``
    the ``k`` of largest magnitude (eigsh's default, Cohen et al.'s call), still returned in
    descending algebraic order.

    ``v0``: start vector (the previous top eigenvector; warm start; None: a fixed random
    vector, so that a measurement is reproducible). ``tol``: ARPACK's
    relative accuracy of the eigenvalues. The model's parameters set the precision (use
    float64 for small models: the eigenvalues of interest are ~2/eta, and float32 HVPs
    carry ~1e-6 relative noise). Works in the model's current mode; buffers are restored.
    """
    if which not in ("LA", "LM"):
        raise ValueError(f"unknown which {which!r}; allowed: LA, LM")
    dtype, device = next(model.parameters()).dtype, next(model.parameters()).device
    products = 0
    with kept_normalization_statistics(model):
        matvec, dim = hessian_vector_product(model, loss_fn, x, y)
        if k >= dim:  # too small for ARPACK: the dense Hessian from dim products
            basis = torch.eye(dim, dtype=dtype, device=device)
            dense = torch.stack([matvec(e) for e in basis], 1).detach().cpu().double().numpy()
            values, vectors = np.linalg.eigh(0.5 * (dense + dense.T))
            keep = np.argsort(np.abs(values) if which == "LM" else values, kind="stable")[::-1][:k]
            keep = keep[np.argsort(values[keep])[::-1]]
            return values[keep].copy(), vectors[:, keep].copy(), dim

        def numpy_matvec(v):
            nonlocal products
            products += 1
            t = torch.as_tensor(np.ascontiguousarray(v).ravel(), dtype=dtype, device=device)
            return matvec(t).detach().cpu().double().numpy()

        operator = LinearOperator((dim, dim), matvec=numpy_matvec, dtype=np.float64)
        if v0 is None:  # ARPACK's own random start is not reproducible across processes
            v0 = np.random.default_rng(0).standard_normal(dim)
        try:
            # A Krylov space of max(2k+1, 8): with a warm start ARPACK stops after ~ncv products
            # (its default of 20 doubles the cost for the same eigenvalue).
            ncv = min(dim, max(2 * k + 1, 8))
            values, vectors = eigsh(operator, k=k, which=which, v0=v0, ncv=ncv, tol=tol, maxiter=max_products)
        except ArpackNoConvergence as err:  # keep what converged, NaN for the rest
            values = np.full(k, np.nan)
            vectors = np.full((dim, k), np.nan)
            got = np.argsort(err.eigenvalues)[::-1]
            values[: len(got)] = err.eigenvalues[got]
            vectors[:, : len(got)] = err.eigenvectors[:, got]
            return values, vectors, products
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order], products


def exact_hessian(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The dense Hessian over the trainable parameters (for tests on tiny models), from
    ``torch.autograd.functional.hessian`` of the loss as a function of one flat parameter
    vector (``torch.func.functional_call``): code independent of the products above."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    names, shapes = list(params), [p.shape for p in params.values()]
    sizes = [p.numel() for p in params.values()]

    def loss_of_flat(flat):
        pieces = dict(zip(names, (c.reshape(s) for c, s in zip(torch.split(flat, sizes), shapes))))
        out = torch.func.functional_call(model, ({**pieces}, {k: v.clone() for k, v in buffers.items()}), (x,))
        return loss_fn(out, y)

    flat = torch.cat([p.reshape(-1) for p in params.values()])
    return torch.autograd.functional.hessian(loss_of_flat, flat).detach().cpu().double().numpy()
