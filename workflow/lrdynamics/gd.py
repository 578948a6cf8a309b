"""Full-batch gradient descent with sharpness tracking: edge of stability, catapult and
balancing on real nets (papers.md section 5; Cohen et al. 2021's ``gd.py`` protocol).

A run trains an FC net (``models.fc_net``) by plain GD on a fixed, stratified subset of
the training set (per-pixel standardized), with the loss averaged over examples:

- ``mse``: 0.5 * sum over outputs of (f - onehot)^2 (Cohen et al.'s convention; torch's
  ``MSELoss(reduction="mean")`` would divide the sharpness by the number of classes);
- ``huber``: the same sum with the Huber function of each residual (quadratic up to
  ``huber_delta``, linear beyond: the slow growth that papers.md calls good regularity),
  written with ``torch.where``;
- ``cross_entropy``.

The LR is either absolute (``lr``) or ``lr_multiple`` x 2/S0, S0 the sharpness at init.
The loss, accuracy and layer norms are recorded at every step (they come with the
gradient), the sharpness (``hessian.sharpness``, warm-started) every ``sharpness_every``
steps. A loss that becomes non-finite or exceeds ``divergence_factor`` x the initial loss
marks the run ``diverged`` at that step; the record is kept.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from lrdynamics.checkpoint import config_fingerprint, load_state, remove_state, resume_path
from lrdynamics.config import run_config_json
from lrdynamics.data import load_prepared, stratified_subset
from lrdynamics.devices import gpu_slot, resolve_device
from lrdynamics.hessian import sharpness
from lrdynamics.models import fc_net, set_layer_norms, weight_layers
from lrdynamics.record import STATUSES, with_run_metadata, write_atomic
from lrdynamics.train import DTYPES, Checkpointing

log = logging.getLogger("lrdynamics.gd")

# name: (long_name, units, dims) of every variable a GD run writes.
GD_VARIABLES = {
    "train_loss": ("training loss on the GD subset (the objective, train mode)", "1", ("step",)),
    "train_accuracy": ("accuracy on the GD subset (train mode)", "1", ("step",)),
    "layer_norm": ("Frobenius norm of each weight layer", "1", ("step", "layer")),
    "sharpness": ("top Hessian eigenvalues of the training loss (Lanczos)", "1", ("sharpness_step", "eigenvalue")),
    "hessian_products": ("Hessian-vector products used by the sharpness measurement", "1", ("sharpness_step",)),
}


def mse_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    target = F.one_hot(y, out.shape[1]).to(out.dtype)
    return 0.5 * ((out - target) ** 2).sum(1).mean()


def huber_loss(out: torch.Tensor, y: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    r = (out - F.one_hot(y, out.shape[1]).to(out.dtype)).abs()
    return torch.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)).sum(1).mean()


def gd_loss(name: str, huber_delta: float = 1.0):
    """The loss function of a GD run by its config name."""
    if name == "mse":
        return mse_loss
    if name == "huber":
        return lambda out, y: huber_loss(out, y, huber_delta)
    if name == "cross_entropy":
        return F.cross_entropy
    raise ValueError(f"unknown loss {name!r}; allowed: mse, huber, cross_entropy")


def gd_subset(run: dict, device, dtype) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The fixed training subset of a GD run: flattened, per-pixel standardized over the
    subset (a pixel constant over the subset is only centred)."""
    record = load_prepared(Path(run["dataset_dir"]) / "train.pt")
    labels = record["labels"].numpy()
    idx = torch.as_tensor(stratified_subset(labels, run["examples"], run["subset_seed"]))
    x = record["images"][idx].to(torch.float64).flatten(1)
    std = x.std(0)
    x = (x - x.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))
    return x.to(device, dtype), record["labels"][idx].to(device), record["classes"]


class GradientDescent:
    """One full-batch GD run (``run``: a resolved GD run config)."""

    def __init__(self, run: dict, threads: int | None = None, device: torch.device | None = None):
        self.run = run
        if threads:
            torch.set_num_threads(threads)
        self.device = device if device is not None else resolve_device(run["device"])
        self.dtype = DTYPES[run["dtype"]]
        self.x, self.y, classes = gd_subset(run, self.device, self.dtype)
        m = run["model"]
        torch.manual_seed(run["seed"])
        model = fc_net(self.x.shape[1], len(classes), m["width"], m["depth"], m["activation"], m["norm"], m["bias"])
        if m["layer_norms"]:
            set_layer_norms(model, m["layer_norms"])
        self.model = model.to(self.device, self.dtype).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.layers = weight_layers(self.model)
        self.loss_fn = gd_loss(run["loss"], run["huber_delta"])
        self.n_steps = run["steps"]
        self.every = run["sharpness_every"]
        self.k = run["sharpness_eigenvalues"]
        self.records = {"step": [], "train_loss": [], "train_accuracy": [], "layer_norm": []}
        self.sharp = {"sharpness_step": [], "sharpness": [], "hessian_products": []}
        self.v0: np.ndarray | None = None
        self.lr = math.nan
        self.initial_sharpness = math.nan
        self.sharpness_seconds = 0.0

    def measure_sharpness(self, step: int) -> float:
        start = time.perf_counter()
        values, vectors, products = sharpness(
            self.model, self.loss_fn, self.x, self.y, k=self.k, v0=self.v0, tol=self.run["sharpness_tol"]
        )
        if np.all(np.isfinite(vectors[:, 0])):
            self.v0 = vectors[:, 0]
        self.sharp["sharpness_step"].append(step)
        self.sharp["sharpness"].append(values)
        self.sharp["hessian_products"].append(products)
        self.sharpness_seconds += time.perf_counter() - start
        return float(values[0])

    def state_dict(self, next_step: int, elapsed_s: float) -> dict:
        return {
            "fingerprint": config_fingerprint(run_config_json(self.run)),
            "next_step": next_step,
            "elapsed_s": elapsed_s,
            "model": self.model.state_dict(),
            "lr": self.lr,
            "initial_sharpness": self.initial_sharpness,
            "v0": self.v0,
            "records": self.records,
            "sharp": self.sharp,
            "sharpness_seconds": self.sharpness_seconds,
        }

    def load_state_dict(self, state: dict) -> int:
        self.model.load_state_dict(state["model"])
        self.lr, self.initial_sharpness, self.v0 = state["lr"], state["initial_sharpness"], state["v0"]
        self.records, self.sharp = state["records"], state["sharp"]
        self.sharpness_seconds = state["sharpness_seconds"]
        return state["next_step"]

    def fit(self, state: dict | None = None, checkpoint: Checkpointing | None = None) -> dict:
        """Run GD to the end or to divergence; return the status attributes."""
        run = self.run
        status = {"status": "completed", "diverged_step": -1}
        start = time.perf_counter()
        if state is None:
            first, elapsed_before = 0, 0.0
            self.initial_sharpness = self.measure_sharpness(0)
            self.lr = run["lr"] if run["lr"] is not None else run["lr_multiple"] * 2.0 / self.initial_sharpness
            log.info(
                "sharpness at init S0 = %.4g; lr = %.4g (2/lr = %.4g)", self.initial_sharpness, self.lr, 2 / self.lr
            )
        else:
            first, elapsed_before = self.load_state_dict(state), state["elapsed_s"]
            log.info("resumed at step %d/%d (%.0f s before)", first, self.n_steps, elapsed_before)
        start -= elapsed_before
        last_log = start
        for step in range(first, self.n_steps + 1):
            self.model.zero_grad(set_to_none=True)
            out = self.model(self.x)
            loss = self.loss_fn(out, self.y)
            value = float(loss.detach())
            self.records["step"].append(step)
            self.records["train_loss"].append(value)
            self.records["train_accuracy"].append(float((out.argmax(1) == self.y).double().mean()))
            self.records["layer_norm"].append([float(p.detach().norm()) for p in self.layers.values()])
            if not math.isfinite(value) or value > run["divergence_factor"] * self.records["train_loss"][0]:
                status = {"status": "diverged", "diverged_step": step}
                log.warning("loss %.4g at step %d: run marked diverged", value, step)
                break
            if step < self.n_steps:
                # before the sharpness measurement: its forward pass touches (and restores)
                # the BN running statistics that this graph's backward still needs
                loss.backward()
            if step % self.every == 0 and step > 0 or step == self.n_steps:
                self.measure_sharpness(step)
            now = time.perf_counter()
            if now - last_log >= run["log_every_seconds"] or step == self.n_steps:
                last_log = now
                rate = (step + 1 - first) / max(now - start - elapsed_before, 1e-9)
                log.info(
                    "step %d/%d  loss %.5g  acc %.4f  sharpness %.4g (2/lr %.4g)  %.1f steps/s",
                    step, self.n_steps, value, self.records["train_accuracy"][-1],
                    self.sharp["sharpness"][-1][0], 2 / self.lr, rate,
                )  # fmt: skip
            if step == self.n_steps:
                break
            with torch.no_grad():
                for p in self.params:
                    p.sub_(self.lr * p.grad)
            if checkpoint is not None and checkpoint.due(step + 1):
                checkpoint.save({**self.state_dict(step + 1, time.perf_counter() - start), "next_update": step + 1})
        wall = time.perf_counter() - start
        steps_done = self.records["step"][-1]
        status.update(
            lr=self.lr,
            initial_sharpness=self.initial_sharpness,
            wall_time_s=wall,
            sharpness_time_s=self.sharpness_seconds,
            steps_per_second=steps_done / max(wall - self.sharpness_seconds, 1e-9),
            device=str(self.device),
            torch_version=torch.__version__,
        )
        return status

    def dataset(self, status: dict) -> xr.Dataset:
        return gd_run_dataset(self.records, self.sharp, list(self.layers), self.run, status)


def gd_run_dataset(records: dict, sharp: dict, layers: list[str], run: dict, attrs: dict) -> xr.Dataset:
    """A GD run's netCDF dataset (the project's contract: hyperparameters as length-1
    dimensions, long_name/units on every variable, status attributes)."""
    n, k = len(records["step"]), run["sharpness_eigenvalues"]
    values = {
        "train_loss": np.asarray(records["train_loss"], dtype=np.float64),
        "train_accuracy": np.asarray(records["train_accuracy"], dtype=np.float64),
        "layer_norm": np.asarray(records["layer_norm"], dtype=np.float64).reshape(n, len(layers)),
        "sharpness": np.asarray(sharp["sharpness"], dtype=np.float64).reshape(-1, k),
        "hessian_products": np.asarray(sharp["hessian_products"], dtype=np.float64),
    }
    ds = xr.Dataset(
        {name: (dims, values[name], {"long_name": ln, "units": u}) for name, (ln, u, dims) in GD_VARIABLES.items()},
        coords={
            "step": ("step", np.asarray(records["step"], dtype=np.int64), {"long_name": "GD steps done", "units": "1"}),
            "sharpness_step": (
                "sharpness_step",
                np.asarray(sharp["sharpness_step"], dtype=np.int64),
                {"long_name": "GD steps done at the sharpness measurement", "units": "1"},
            ),
            "eigenvalue": ("eigenvalue", np.arange(1, k + 1), {"long_name": "rank of the Hessian eigenvalue"}),
            "layer": ("layer", np.asarray(layers, dtype=str), {"long_name": "weight layer (parameter name)"}),
        },
    )
    ds = with_run_metadata(ds, run, "lrdynamics full-batch GD run", "lrdynamics.gd")
    ds.attrs.update(
        kind="full_batch_gd",
        loss=run["loss"],
        activation=run["model"]["activation"],
        norm=run["model"]["norm"],
        examples=run["examples"],
        lr_multiple=run["lr_multiple"] if run["lr_multiple"] is not None else math.nan,
    )
    ds.attrs.update(attrs)
    if ds.attrs.get("status") not in STATUSES:
        raise ValueError(f"status attribute must be one of {STATUSES}")
    return ds


def train_gd(
    run: dict,
    out_path,
    threads=None,
    jobs_per_gpu=None,
    checkpoint_every_updates: int | None = None,
    checkpoint_every_seconds: float | None = 600.0,
):
    """Run one GD run and write its netCDF file. Resume state as ``train.train``: saved
    every ``checkpoint_every_updates`` GD steps, every ``checkpoint_every_seconds`` and on
    SIGTERM/SIGINT/SIGUSR1 (then ``Interrupted``); a rerun continues from it."""
    with gpu_slot(run["device"], jobs_per_gpu) as device:
        gd = GradientDescent(run, threads, device)
        state_path = resume_path(out_path)
        state = load_state(state_path, config_fingerprint(run_config_json(run)), gd.device)
        m = run["model"]
        log.info(
            "GD run %s/%s: fc-%s depth %d width %d norm %s, %s loss, %d examples, %d steps, sharpness every %d, %s",
            run["experiment"], run["run"], m["activation"], m["depth"], m["width"], m["norm"], run["loss"],
            run["examples"], run["steps"], run["sharpness_every"], gd.device,
        )  # fmt: skip
        with Checkpointing(state_path, checkpoint_every_updates, checkpoint_every_seconds) as checkpoint:
            status = gd.fit(state, checkpoint)
        ds = gd.dataset(status)
        write_atomic(ds, out_path)
        remove_state(state_path)
        log.info("wrote %s (%s, %.1f s, of which sharpness %.1f s)", out_path, status["status"],
                 status["wall_time_s"], status["sharpness_time_s"])  # fmt: skip
        return ds
