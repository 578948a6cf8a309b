"""The record of a minibatch run: one row per evaluation, one per gradient-noise measurement.

An evaluation row holds the eval-mode loss and accuracy on the train and test subsets
(BN statistics re-estimated first when the run asks), the stored test logits and
predictions, the LR, WD and intrinsic LR in force, every layer's weight norm and effective
LR, and the last update's angle and gradient norm. Evaluation never changes training: BN
running statistics and the train/eval mode are restored afterwards.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lrdynamics.engine.batches import DeviceData
from lrdynamics.engine.contract import NOISE_VARIABLES, OPTIONAL_VARIABLES, VARIABLES
from lrdynamics.engine.models import kept_normalization_statistics
from lrdynamics.engine.quantities import angular_update, effective_lr, intrinsic_lr


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
        self.noise_rows: dict[str, list] = {k: [] for k in ["noise_step", *NOISE_VARIABLES]}

    def add_evaluation(self, model, step: int, epoch: float, lr: float, wd: float, scale: float, last: dict) -> None:
        """Add the evaluation row of effective step ``step``. ``scale``: the true weights are
        the stored ones times it; ``last``: what the updates since the previous row measured
        (``window_loss``, ``window_angle``, and of the last update ``before``, the weights
        before it or None, and ``grad_norm``)."""
        r, ev = self.rows, self.evaluation
        r["step"].append(step)
        r["epoch"].append(epoch)
        with kept_normalization_statistics(model):  # recalibration must not touch training
            if ev["bn_recalibration_samples"]:
                images, _ = self.train.unpadded(ev["bn_recalibration_samples"])
                recalibrate_batch_norm(model, images, ev["batch_size"])
            for split, data, n in (("train", self.train, ev["train_samples"]), ("test", self.test, ev["test_samples"])):
                loss, acc = loss_and_accuracy(model, *data.unpadded(n), ev["batch_size"])
                r[f"{split}_loss"].append(loss)
                r[f"{split}_accuracy"].append(acc)
            if ev["logit_samples"]:
                images, _ = self.test.unpadded(ev["logit_samples"])
                r["test_logits"].append(predict(model, images, ev["batch_size"]).double().cpu().numpy())
            if ev["prediction_samples"]:
                images, _ = self.test.unpadded(ev["prediction_samples"])
                r["test_predictions"].append(predict(model, images, ev["batch_size"]).argmax(1).cpu().numpy())
        r["minibatch_loss"].append(last["window_loss"])
        r["learning_rate"].append(lr)
        r["weight_decay"].append(wd)
        r["intrinsic_lr"].append(intrinsic_lr(lr, wd, self.momentum))
        norms = [float(p.detach().double().norm()) * scale for p in self.layers.values()]
        total = math.sqrt(sum(n * n for n in norms))
        r["weight_norm"].append(norms)
        r["total_weight_norm"].append(total)
        r["effective_lr"].append([effective_lr(lr, n) for n in norms])
        r["total_effective_lr"].append(effective_lr(lr, total))
        before = last["before"]
        if before is None:
            r["angular_update"].append([math.nan] * len(norms))
            r["total_angular_update"].append(math.nan)
        else:
            r["angular_update"].append([angular_update(before[k], p.detach()) for k, p in self.layers.items()])
            r["total_angular_update"].append(last["window_angle"])
        r["grad_norm"].append(last["grad_norm"])

    def state_dict(self) -> dict:
        return {"records": self.rows, "noise_records": self.noise_rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows, self.noise_rows = state["records"], state["noise_records"]

    def add_noise(self, step: int, measured: dict) -> None:
        """Add a gradient-noise row (``measured``: a value for each NOISE_VARIABLES name)."""
        self.noise_rows["noise_step"].append(step)
        for name in NOISE_VARIABLES:
            self.noise_rows[name].append(measured[name])
