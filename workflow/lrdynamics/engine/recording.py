"""The record of a minibatch run: one row per evaluation, one per gradient-noise measurement.

An evaluation row holds the eval-mode loss and accuracy on the train and test subsets
(BN statistics re-estimated first when the run asks), the stored test logits and
predictions, the LR, WD and intrinsic LR in force, every layer's weight norm and effective
LR, the last update's angle and gradient norm, the momentum buffer's RMS norm over the
window, and the weight direction's distance from an anchor evaluation's. Evaluation never
changes training: BN running statistics and the train/eval mode are restored afterwards.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lrdynamics.engine.batches import DeviceData
from lrdynamics.engine.contract import NOISE_VARIABLES, OPTIONAL_NOISE_VARIABLES, OPTIONAL_VARIABLES, VARIABLES
from lrdynamics.engine.models import kept_normalization_statistics
from lrdynamics.engine.quantities import angular_update, effective_lr, intrinsic_lr, unit_direction


@torch.no_grad()
def predict(model, images, batch_size: int) -> torch.Tensor:
    """Logits in eval mode (running normalization statistics), in batches."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return out


@torch.no_grad()
def loss_and_accuracy(model, images, labels, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode."""
    out = predict(model, images, batch_size)
    loss = float(F.cross_entropy(out.double(), labels, reduction="sum")) / len(labels)
    return loss, float((out.argmax(1) == labels).sum()) / len(labels)


@torch.no_grad()
def recalibrate_batch_norm(model, images: torch.Tensor, batch_size: int) -> None:
    """Re-estimate BN running statistics on ``images`` (train-mode passes, the cumulative
    average over the batches); the caller keeps the old ones with
    ``kept_normalization_statistics``."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    for i in range(0, len(images), batch_size):
        model(images[i : i + batch_size])
    for m, mom in zip(bns, momenta):
        m.momentum = mom


class Recorder:
    """The rows of one run's record (``rows``: evaluations, ``noise_rows``: gradient noise).

    ``evaluation``: the run's ``evaluation`` section; ``momentum``: for the intrinsic LR;
    ``layers``: the weight layers whose norms are tracked.
    """

    def __init__(self, evaluation: dict, momentum: float, layers: dict, train: DeviceData, test: DeviceData):
        self.evaluation, self.momentum, self.layers = evaluation, momentum, layers
        self.train, self.test = train, test
        self.rows: dict[str, list] = {k: [] for k in ["step", "epoch", *VARIABLES, *OPTIONAL_VARIABLES]}
        self.noise_rows: dict[str, list] = {k: [] for k in ["noise_step", *NOISE_VARIABLES, *OPTIONAL_NOISE_VARIABLES]}
        self.anchor: torch.Tensor | None = None  # the direction at evaluation.direction_anchor

    def model_outputs(self, model) -> dict:
        """What the evaluation row takes from the model's outputs: the losses and accuracies
        of both splits, and the stored test logits and predictions when the run asks."""
        ev, out = self.evaluation, {}
        with kept_normalization_statistics(model):  # recalibration must not touch training
            if ev["bn_recalibration_samples"]:
                images, _ = self.train.unpadded(ev["bn_recalibration_samples"])
                recalibrate_batch_norm(model, images, ev["batch_size"])
            for split, data, n in (("train", self.train, ev["train_samples"]), ("test", self.test, ev["test_samples"])):
                out[f"{split}_loss"], out[f"{split}_accuracy"] = loss_and_accuracy(model, *data.unpadded(n),
                                                                                   ev["batch_size"])  # fmt: skip
            if ev["logit_samples"]:
                images, _ = self.test.unpadded(ev["logit_samples"])
                out["test_logits"] = predict(model, images, ev["batch_size"]).double().cpu().numpy()
            if ev["prediction_samples"]:
                images, _ = self.test.unpadded(ev["prediction_samples"])
                out["test_predictions"] = predict(model, images, ev["batch_size"]).argmax(1).cpu().numpy()
        return out

    def add_evaluation(self, model, step: int, epoch: float, lr: float, wd: float, scale: float, last: dict) -> None:
        """Add the evaluation row of effective step ``step``. ``scale``: the true weights are
        the stored ones times it; ``last``: what the updates since the previous row measured
        (``window_loss``, ``window_angle``, and of the last update ``before``, the weights
        before it or None, and ``grad_norm``), and ``buffer_norm``, the root mean square of
        the momentum buffer's true norm over those updates (NaN: none)."""
        norms = [float(p.detach().double().norm()) * scale for p in self.layers.values()]
        before = last["before"]
        angles = None if before is None else [angular_update(before[k], p.detach()) for k, p in self.layers.items()]
        direction = None
        if self.evaluation.get("direction_anchor") is not None:
            direction = unit_direction(torch.cat([p.detach().double().flatten() for p in self.layers.values()]))
        self.add_row(step, epoch, lr, wd, self.model_outputs(model), norms, angles, direction, last)

    def add_row(self, step, epoch, lr, wd, outputs: dict, norms: list, angles, direction, last: dict) -> None:
        """The evaluation row from its measured parts: ``outputs`` (``model_outputs``), each
        layer's true ``norms``, each layer's angle of the last update (None: not measured),
        the unit ``direction`` of the stored weights (None: no anchor asked) and ``last``
        (``add_evaluation``). An ensemble measures the parts of all members at once."""
        r = self.rows
        r["step"].append(step)
        r["epoch"].append(epoch)
        for name, value in outputs.items():
            r[name].append(value)
        r["minibatch_loss"].append(last["window_loss"])
        r["learning_rate"].append(lr)
        r["weight_decay"].append(wd)
        r["intrinsic_lr"].append(intrinsic_lr(lr, wd, self.momentum))
        total = math.sqrt(sum(n * n for n in norms))
        r["weight_norm"].append(norms)
        r["total_weight_norm"].append(total)
        r["effective_lr"].append([effective_lr(lr, n) for n in norms])
        r["total_effective_lr"].append(effective_lr(lr, total))
        if angles is None:
            r["angular_update"].append([math.nan] * len(norms))
            r["total_angular_update"].append(math.nan)
        else:
            r["angular_update"].append(angles)
            r["total_angular_update"].append(last["window_angle"])
        r["grad_norm"].append(last["grad_norm"])
        r["momentum_buffer_norm"].append(last["buffer_norm"])
        if direction is not None:
            if self.anchor is None and epoch >= self.evaluation["direction_anchor"] - 1e-9:
                self.anchor = direction.clone()
            gap = math.nan if self.anchor is None else float(torch.linalg.vector_norm(direction - self.anchor))
            r["direction_distance"].append(gap)

    def state_dict(self) -> dict:
        return {"records": self.rows, "noise_records": self.noise_rows, "direction_anchor": self.anchor}

    def load_state_dict(self, state: dict) -> None:
        self.rows, self.noise_rows = state["records"], state["noise_records"]
        self.anchor = state.get("direction_anchor")

    def add_noise(self, step: int, measured: dict) -> None:
        """Add a gradient-noise row (``measured``: a value for each NOISE_VARIABLES name)."""
        self.noise_rows["noise_step"].append(step)
        for name in NOISE_VARIABLES:
            self.noise_rows[name].append(measured[name])
        for name in OPTIONAL_NOISE_VARIABLES:  # NaN where the estimator gives none
            self.noise_rows.setdefault(name, []).append(measured.get(name, float("nan")))
