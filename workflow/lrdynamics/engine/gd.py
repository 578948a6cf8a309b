"""Full-batch gradient descent with sharpness tracking: edge of stability, catapult and
balancing on real nets (docs/science.md section 6; Cohen et al. 2021's ``gd.py`` protocol).

A run trains an FC net (``engine.models.fc_net``) by plain GD on a fixed subset of the
training set (``gd_subset``: class-stratified, or the first ``examples`` images as Cohen et
al.; flattened and standardized per pixel with the statistics of the subset, or of the whole
training set as Cohen et al.), with the loss averaged over examples:

- ``mse``: 0.5 * sum over outputs of (f - onehot)^2 (Cohen et al.'s convention; torch's
  ``MSELoss(reduction="mean")`` is 2/K times it, K classes, and so is its sharpness);
- ``huber``: the same sum with the Huber function of each residual (quadratic up to
  ``huber_delta``, linear beyond: the slow growth that the papers call good regularity),
  written with ``torch.where``;
- ``cross_entropy``.

The LR is either absolute (``lr``) or ``lr_multiple`` x 2/S0, S0 the sharpness at init.
The loss, accuracy and layer norms are recorded at every step (they come with the
gradient), the sharpness (``engine.hessian.sharpness``, warm-started) every ``sharpness_every``
steps. A loss that becomes non-finite or exceeds ``divergence_factor`` x the initial loss
marks the run ``diverged`` at that step; the record is kept. With ``stop_train_accuracy``
the run stops (``completed``, ``stopped_step`` that step) at the first step whose training
accuracy reaches it (Cohen et al.'s ``--acc_goal``), after that step's sharpness
measurement; the record ends there. ``GradientDescent`` has the
trainer protocol of ``engine.trainer.Trainer`` (``fit``, ``state_dict``, ``dataset``), so
``engine.job.train`` runs both.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lrdynamics.engine.data import gd_example_indices, load_prepared, pixel_statistics
from lrdynamics.engine.devices import DTYPES, describe_device, resolve_device
from lrdynamics.engine.hessian import sharpness
from lrdynamics.engine.logs import Progress
from lrdynamics.engine.models import fc_net, set_layer_norms, weight_layers
from lrdynamics.engine.runfile import gd_run_dataset

log = logging.getLogger(__name__)


def mse_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    target = F.one_hot(y, out.shape[1]).to(out.dtype)
    return 0.5 * ((out - target) ** 2).sum(1).mean()


def huber_loss(out: torch.Tensor, y: torch.Tensor, delta: float) -> torch.Tensor:
    r = (out - F.one_hot(y, out.shape[1]).to(out.dtype)).abs()
    return torch.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)).sum(1).mean()


def gd_loss(name: str, huber_delta: float):
    """The loss function of a GD run by its config name."""
    if name == "mse":
        return mse_loss
    if name == "huber":
        return lambda out, y: huber_loss(out, y, huber_delta)
    if name == "cross_entropy":
        return F.cross_entropy
    raise ValueError(f"unknown loss {name!r}; allowed: mse, huber, cross_entropy")


def gd_subset(run: dict, device, dtype) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The fixed training subset of a GD run, flattened and standardized per pixel (each of
    the C*H*W inputs).

    ``examples_from``: ``stratified`` (``stratified_subset`` with ``subset_seed``) or
    ``first`` (the first ``examples`` images of the prepared training set, in file order).
    ``standardize_with``: ``subset`` (mean and unbiased std over the subset) or ``train``
    (mean and population std over the whole prepared training set: Cohen et al.'s
    ``center`` and ``standardize`` in ``src/cifar.py``). A pixel constant over those images
    is only centred.
    """
    record = load_prepared(Path(run["dataset_dir"]) / "train.pt")
    labels = record["labels"].numpy()
    idx = torch.as_tensor(gd_example_indices(labels, run["examples"], run["examples_from"], run["subset_seed"]))
    x = record["images"][idx].to(torch.float64).flatten(1)
    if run["standardize_with"] == "subset":
        mean, std = x.mean(0), x.std(0)
    elif run["standardize_with"] == "train":
        mean, std = pixel_statistics(record["images"])
    else:
        raise ValueError(f"unknown standardize_with {run['standardize_with']!r}; allowed: subset, train")
    x = (x - mean) / torch.where(std > 0, std, torch.ones_like(std))
    return x.to(device, dtype), record["labels"][idx].to(device), record["classes"]


class GradientDescent:
    """One full-batch GD run (``run``: a resolved GD run config)."""

    def __init__(self, run: dict, threads: int | None = None, device: torch.device | None = None):
        self.run = run
        if threads:
            torch.set_num_threads(threads)
        self.device = device if device is not None else resolve_device(run["device"])
        dtype = DTYPES[run["dtype"]]
        self.x, self.y, classes = gd_subset(run, self.device, dtype)
        m = run["model"]
        torch.manual_seed(run["seed"])
        model = fc_net(self.x.shape[1], len(classes), m["width"], m["depth"], m["activation"], m["norm"], m["bias"])
        if m["layer_norms"]:
            set_layer_norms(model, m["layer_norms"])
        self.model = model.to(self.device, dtype).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.layers = weight_layers(self.model)
        self.loss_fn = gd_loss(run["loss"], run["huber_delta"])
        self.n_steps, self.every = run["steps"], run["sharpness_every"]
        self.records = {"step": [], "train_loss": [], "train_accuracy": [], "layer_norm": []}
        self.sharp = {"sharpness_step": [], "sharpness": [], "hessian_products": []}
        self.v0: np.ndarray | None = None
        self.lr = self.initial_sharpness = math.nan
        self.sharpness_seconds = 0.0

    def describe(self) -> str:
        run, m = self.run, self.run["model"]
        return (
            f"GD run {run['experiment']}/{run['run']}: fc-{m['activation']} depth {m['depth']} width {m['width']} "
            f"norm {m['norm']}, {run['loss']} loss, {run['examples']} examples ({run['examples_from']}, "
            f"standardized with the {run['standardize_with']} statistics), {run['steps']} steps"
            + ("" if run["stop_train_accuracy"] is None else f" or to train accuracy {run['stop_train_accuracy']:g}")
            + f", sharpness ({run['sharpness_which']}) every {run['sharpness_every']}, {self.device}"
        )

    def measure_sharpness(self, step: int) -> float:
        start = time.perf_counter()
        values, vectors, products = sharpness(
            self.model, self.loss_fn, self.x, self.y, k=self.run["sharpness_eigenvalues"], v0=self.v0,
            tol=self.run["sharpness_tol"], which=self.run["sharpness_which"],
        )  # fmt: skip
        if np.all(np.isfinite(vectors[:, 0])):
            self.v0 = vectors[:, 0]
        self.sharp["sharpness_step"].append(step)
        self.sharp["sharpness"].append(values)
        self.sharp["hessian_products"].append(products)
        self.sharpness_seconds += time.perf_counter() - start
        return float(values[0])

    def state_dict(self, next_update: int, elapsed_s: float) -> dict:
        """Everything the loop needs to continue at GD step ``next_update``."""
        return {
            "next_update": next_update,
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
        return state["next_update"]

    def _begin(self, state: dict | None) -> tuple[int, Progress]:
        """The step to start at and the progress clock; a fresh run measures S0 and sets the LR."""
        every = self.run["log_every_seconds"]
        if state is not None:
            first = self.load_state_dict(state)
            log.info("resumed at step %d/%d (%.0f s before)", first, self.n_steps, state["elapsed_s"])
            return first, Progress("step", self.n_steps, first, state["elapsed_s"], every)
        clock = Progress("step", self.n_steps, 0, 0.0, every)  # the run's wall time starts here
        self.initial_sharpness = self.measure_sharpness(0)
        multiple = self.run["lr_multiple"]
        self.lr = self.run["lr"] if multiple is None else multiple * 2.0 / self.initial_sharpness
        log.info("sharpness at init S0 = %.4g; lr = %.4g (2/lr = %.4g)", self.initial_sharpness, self.lr, 2 / self.lr)
        return 0, clock

    def _forward(self, step: int) -> torch.Tensor:
        """The full-batch loss at the current weights, its row of the record added."""
        self.model.zero_grad(set_to_none=True)
        out = self.model(self.x)
        loss = self.loss_fn(out, self.y)
        self.records["step"].append(step)
        self.records["train_loss"].append(float(loss.detach()))
        self.records["train_accuracy"].append(float((out.argmax(1) == self.y).double().mean()))
        self.records["layer_norm"].append([float(p.detach().norm()) for p in self.layers.values()])
        return loss

    def fit(self, state: dict | None = None, checkpoint=None) -> dict:
        """Run GD to the end, to the accuracy goal or to divergence; return the status attributes."""
        first, clock = self._begin(state)
        status = {"status": "completed", "diverged_step": -1, "stopped_step": -1}
        losses, goal = self.records["train_loss"], self.run["stop_train_accuracy"]
        for step in range(first, self.n_steps + 1):
            loss = self._forward(step)
            if not math.isfinite(losses[-1]) or losses[-1] > self.run["divergence_factor"] * losses[0]:
                status = {**status, "status": "diverged", "diverged_step": step}
                log.warning("loss %.4g at step %d: run marked diverged", losses[-1], step)
                break
            # the accuracy goal (Cohen et al.'s --acc_goal), checked before this step's update
            stop = goal is not None and step < self.n_steps and self.records["train_accuracy"][-1] >= goal
            last = step == self.n_steps or stop
            if not last:
                # before the sharpness measurement: its forward pass touches (and restores)
                # the BN running statistics that this graph's backward still needs
                loss.backward()
            measured = self.sharp["sharpness_step"] and self.sharp["sharpness_step"][-1] == step
            if (step % self.every == 0 and step > 0 or last) and not measured:
                self.measure_sharpness(step)
            clock.tick()
            if clock.log_due() or last:
                clock.log(step, f"loss {losses[-1]:.5g}  acc {self.records['train_accuracy'][-1]:.4f}  sharpness "
                                f"{self.sharp['sharpness'][-1][0]:.4g} (2/lr {2 / self.lr:.4g})")  # fmt: skip
            if stop:
                status["stopped_step"] = step
                accuracy = self.records["train_accuracy"][-1]
                log.info("train accuracy %.4f >= %g at step %d: run stopped", accuracy, goal, step)
            if last:
                break
            with torch.no_grad():
                for p in self.params:
                    p.sub_(self.lr * p.grad)
            if checkpoint is not None and checkpoint.due(step + 1):
                checkpoint.save(self.state_dict(step + 1, clock.elapsed()))
        return self._status(status, clock.elapsed())

    def _status(self, status: dict, wall: float) -> dict:
        return {
            **status,
            "lr": self.lr,
            "initial_sharpness": self.initial_sharpness,
            "wall_time_s": wall,
            "sharpness_time_s": self.sharpness_seconds,
            "steps_per_second": self.records["step"][-1] / max(wall - self.sharpness_seconds, 1e-9),
            "device": describe_device(self.device),
            "torch_version": torch.__version__,
        }

    def dataset(self, status: dict):
        """The run file's dataset (``engine.runfile.gd_run_dataset``)."""
        return gd_run_dataset(self.records, self.sharp, list(self.layers), self.run, status)
