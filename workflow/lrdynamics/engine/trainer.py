"""The minibatch trainer: one resolved run config trained to its record.

SGD with PyTorch semantics (``torch.optim.SGD``: coupled weight decay, momentum buffer
without the LR), or Adam/RMSprop (``torch.optim.Adam``, coupled weight decay; RMSprop is
beta1 = 0), with LR and WD set per update from a precomputed schedule, and SVAG
(docs/science.md sections 1, 4, 5). The data path is ``engine.batches``: the dataset
resident on the device, a ``randperm`` per epoch, crop and flip on whole batches.

``Trainer(run).fit()`` trains; ``engine.job.train`` is the job around it (device, resume
state, the run file).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lrdynamics.engine.adaptive import is_adaptive, updates_per_step
from lrdynamics.engine.batches import BatchStream, DeviceData, seeded_generator
from lrdynamics.engine.contract import run_outcome
from lrdynamics.engine.data import load_prepared
from lrdynamics.engine.devices import DTYPES, describe_device, resolve_device, set_float32_precision, use_channels_last
from lrdynamics.engine.gradient_noise import NoiseMeter, noise_batches
from lrdynamics.engine.logs import Progress
from lrdynamics.engine.models import build_model, weight_layers
from lrdynamics.engine.optimizers import build_optimizer, momentum_buffer_square, optimizer_step, svag_loss
from lrdynamics.engine.quantities import chord_angle, unit_direction
from lrdynamics.engine.recording import Recorder
from lrdynamics.engine.runfile import run_dataset
from lrdynamics.engine.schedules import build_schedule, steps_per_epoch, to_steps, total_steps

log = logging.getLogger(__name__)
# Offsets from the run's seed of the generators of the data streams (SVAG has two) and of
# the gradient-noise batches: every random draw of a run follows from its seed.
STREAM_SEEDS, NOISE_SEED = (1_000_003, 2_000_003), 3_000_017


def cadence_steps(every: float, unit: str, steps_in_epoch: int, n_steps: int) -> list[int]:
    """Effective steps at which something is measured: 0, every k, the end."""
    k = max(1, to_steps(every, unit, steps_in_epoch))
    return sorted(set(range(0, n_steps, k)) | {n_steps})


def log_cadence_steps(per_decade: int, n_steps: int) -> list[int]:
    """Log-spaced steps: 0, the distinct round(10^(j/per_decade)) below ``n_steps``, the end."""
    steps, j = {0, n_steps}, 0
    while (step := round(10 ** (j / per_decade))) < n_steps:
        steps.add(step)
        j += 1
    return sorted(steps)


def evaluation_steps(evaluation: dict, steps_in_epoch: int, n_steps: int) -> list[int]:
    """The evaluation steps of a run: log-spaced (``per_decade``) or every ``every`` ``unit``s."""
    if evaluation.get("per_decade"):
        return log_cadence_steps(evaluation["per_decade"], n_steps)
    return cadence_steps(evaluation["every"], evaluation["unit"], steps_in_epoch, n_steps)


@dataclass(frozen=True)
class TimeLine:
    """When things happen in a run. Steps are effective ones: updates / ``updates_per_step``
    (l under SGD's SVAG, l^2 under adaptive SVAG, else 1)."""

    steps_per_epoch: int
    n_steps: int
    updates_per_step: int
    eval_steps: frozenset[int]
    noise_steps: frozenset[int]

    @property
    def n_updates(self) -> int:
        return self.n_steps * self.updates_per_step

    @classmethod
    def of(cls, run: dict, n_train: int) -> TimeLine:
        tr, ev, gn = run["training"], run["evaluation"], run["gradient_noise"]
        spe = steps_per_epoch(n_train, tr["batch_size"], tr["drop_last"])
        n = total_steps(tr["epochs"], spe)
        evaluations = evaluation_steps(ev, spe, n)
        noise = cadence_steps(gn["every"], gn["unit"], spe, n) if gn["every"] else []
        return cls(spe, n, updates_per_step(run["optimizer"]), frozenset(evaluations), frozenset(noise))


def rescale_exponent(norm: float, initial_norm: float, limit: int | None) -> int:
    """j with which to divide the weights by 2^j: 0 while the norm is within
    [2^-limit, 2^limit] times its initial value (or not finite: diverged, for the
    divergence check to record), else round(log2 of the ratio)."""
    if limit is None or not (math.isfinite(norm) and norm > 0):
        return 0
    ratio = math.log2(norm / initial_norm)
    return 0 if abs(ratio) <= limit else round(ratio)


class WeightScale:
    """Keeps a scale-invariant net's weights in float range by dividing them by 2**k.

    The true weights are the stored ones times ``2**log2``. The function is unchanged
    (scale invariance) and so is the trajectory: with w' = w/s the gradient is s*grad, so
    the momentum buffer becomes s*v, the LR lr/s^2 and the (coupled) WD wd*s^2. With s a
    power of two every product is exact in floating point, so the rescaled run is the same
    run, bit for bit in practice. ``limit`` None: never (not scale-invariant, or adaptive,
    whose eps breaks the identity).
    """

    def __init__(self, layers: dict, limit: int | None):
        self.layers, self.limit, self.log2 = layers, limit, 0
        self.initial_norm = self.stored_norm()

    def stored_norm(self) -> float:
        return float(torch.linalg.vector_norm(torch.stack([p.detach().double().norm() for p in self.layers.values()])))

    def rescale(self, optimizer: torch.optim.Optimizer) -> None:
        """Rescale when the norm has left [2^-limit, 2^limit] times its initial value."""
        if self.limit is None:
            return
        k = rescale_exponent(self.stored_norm(), self.initial_norm, self.limit)
        if not k:
            return
        with torch.no_grad():
            for p in self.layers.values():
                p.mul_(2.0**-k)
                buf = optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(2.0**k)
        self.log2 += k
        log.info("rescaled the weights by 2^%d (true scale now 2^%d) to stay in range", -k, self.log2)

    def state_dict(self) -> dict:
        return {"log2_scale": self.log2, "initial_norm": self.initial_norm}

    def load_state_dict(self, state: dict) -> None:
        self.log2, self.initial_norm = state["log2_scale"], state["initial_norm"]


class UpdateWindow:
    """What the updates add up on the device between evaluations, with no device sync per
    update: the minibatch losses and the angles moved, the first update whose loss or
    weights became non-finite, and the weights' current direction."""

    KEYS = ("window_sum", "angle_sum", "buffer_sum", "window_n", "first_bad", "direction")
    _direction, _angle = staticmethod(unit_direction), staticmethod(chord_angle)

    def __init__(self, device, weights: torch.Tensor):
        shape = weights.shape[:-1]  # (): one run's flat weights; (K,): an ensemble's (ensemble.MemberWindow)
        self.window_sum = torch.zeros(shape, dtype=torch.float64, device=device)
        self.angle_sum = torch.zeros(shape, dtype=torch.float64, device=device)  # per-update angles
        self.buffer_sum = torch.zeros(shape, dtype=torch.float64, device=device)  # true |v|^2 (NaN: none)
        self.window_n = 0
        self.first_bad = torch.full(shape, -1, dtype=torch.int64, device=device)
        # The direction after one update is the one before the next: rescaling in between only
        # multiplies the weights by a power of two, which leaves their direction as is.
        self.direction = self._direction(weights)

    def add(self, index: int, loss: torch.Tensor, weights: torch.Tensor, buffer_sq: torch.Tensor | None = None) -> None:
        """Update ``index`` gave ``loss`` and moved the weights to ``weights``; ``buffer_sq``:
        the squared norm of its momentum buffer at the true scale (None: no buffer)."""
        self.buffer_sum += math.nan if buffer_sq is None else buffer_sq
        direction = self._direction(weights)
        angle = self._angle(self.direction, direction)  # NaN once a weight is inf or NaN
        self.angle_sum += angle
        self.direction = direction
        bad = ~torch.isfinite(loss) | ~torch.isfinite(angle)
        self.first_bad = torch.where(bad & (self.first_bad < 0), index, self.first_bad)
        self.window_sum += loss
        self.window_n += 1

    def close(self) -> tuple[float, float, float]:
        """The mean loss and angle per update since the last call and the root mean square of
        the buffer's norm (NaN: no update), then reset."""
        n = self.window_n
        if not n:
            means = (math.nan,) * 3
        else:
            means = (float(self.window_sum) / n, float(self.angle_sum) / n, math.sqrt(float(self.buffer_sum) / n))
        self._reset()
        return means

    def _reset(self) -> None:
        self.window_sum.zero_()
        self.angle_sum.zero_()
        self.buffer_sum.zero_()
        self.window_n = 0

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.KEYS}

    def load_state_dict(self, state: dict) -> None:
        for k in self.KEYS:
            setattr(self, k, state[k])


def accumulated_backward(batch_loss, n: int, micro: int | None) -> torch.Tensor:
    """Backward of a batch of ``n`` examples, micro-batch by micro-batch (gradient
    accumulation, ``training.micro_batch_size``); returns the batch loss, detached.

    ``batch_loss(part)`` is the mean loss of the examples ``part`` (a slice of the batch). Each
    micro-batch's mean is weighted by its share of the batch, so the accumulated gradient is
    the gradient of the batch mean. For nets without BatchNorm that is the full-batch
    gradient (to float rounding); with BatchNorm each micro-batch is normalized with its own
    statistics (ghost batches, as the SVAG authors built B = 4096) and the running
    statistics are updated once per micro-batch. ``micro`` None or >= n: one backward, the
    loss unweighted (bit for bit the loop without accumulation).
    """
    if micro is None or micro >= n:
        loss = batch_loss(slice(0, n))
        loss.sum().backward()
        return loss.detach()
    total = None
    for start in range(0, n, micro):
        part = slice(start, min(start + micro, n))
        loss = batch_loss(part) * ((part.stop - part.start) / n)
        loss.sum().backward()  # the sum over an ensemble's members: each its own gradient
        total = loss.detach() if total is None else total + loss.detach()
    return total


def run_schedule(run: dict, timeline: TimeLine):
    """The run's per-update LR and WD (``engine.schedules.build_schedule``)."""
    t, opt = timeline, run["optimizer"]
    return build_schedule(run["schedule"], t.steps_per_epoch, t.n_steps, opt["momentum"], opt["svag"],
                          t.updates_per_step)  # fmt: skip


def data_streams(run: dict, train: DeviceData, timeline: TimeLine, device, seed: int) -> list[BatchStream]:
    """The training batch stream(s) of the run with ``seed``: one, or SVAG's two."""
    tr = run["training"]
    return [
        BatchStream(
            train,
            tr["batch_size"],
            timeline.steps_per_epoch,
            tr["crop_padding"] > 0,
            tr["flip"],
            seeded_generator(device, seed + offset),
        )  # fmt: skip
        for offset in STREAM_SEEDS[: 2 if run["optimizer"]["svag"] > 1 else 1]
    ]


def noise_meter(run: dict, train: DeviceData, timeline: TimeLine, device, seed: int) -> NoiseMeter | None:
    """The gradient-noise meter of the run with ``seed`` (None: it measures none)."""
    if not timeline.noise_steps:
        return None
    tr, gn = run["training"], run["gradient_noise"]
    B = tr["batch_size"]
    generator = seeded_generator(device, seed + NOISE_SEED)
    return NoiseMeter(train, B, tr["crop_padding"] > 0, tr["flip"], generator, noise_batches(B, gn["batches"]),
                      gn["threshold_c"], estimator=gn["estimator"], samples=gn["samples"])  # fmt: skip


def device_splits(folder: Path, device, dtype, padding: int) -> tuple[DeviceData, DeviceData, int]:
    """The prepared train and test splits of ``folder`` on the device (the training split
    padded for cropping), and the number of classes."""
    train, test = load_prepared(folder / "train.pt"), load_prepared(folder / "test.pt")
    return DeviceData(train, device, dtype, padding), DeviceData(test, device, dtype), len(train["classes"])


def initial_model(spec: dict, training: dict, in_shape, n_classes: int, dtype) -> torch.nn.Module:
    """The run's initial net, on the CPU: the weights depend only on ``training.seed``, then
    ``init_scale`` times the weight layers and, for a chaos-floor twin, one ulp up."""
    torch.manual_seed(training["seed"])
    model = build_model(spec, in_shape, n_classes).to(dtype)
    with torch.no_grad():
        if training["init_scale"] != 1.0:
            for p in weight_layers(model).values():
                p.mul_(training["init_scale"])
        if training["perturb_init"]:  # one ulp up: the chaos floor of equivalence tests
            for p in model.parameters():
                p.copy_(torch.nextafter(p, torch.full_like(p, math.inf)))
    return model


class UpdateLoop:
    """The update loop of a minibatch trainer (``Trainer``; ``engine.ensemble.Members``, the
    members of an ensemble at once): updates, the divergence check at each evaluation, noise
    measurement and progress line, evaluations, noise measurements, progress lines and resume states. The
    trainer provides ``timeline``, ``run``, ``model``, ``update``, ``start_updates``,
    ``evaluate``, ``measure_noise``, ``stop_diverged``, ``progress_text`` and the state."""

    def train_loop(self, state: dict | None, checkpoint) -> float:
        """Train from ``state`` (None: from the start) to the end or to divergence; return
        the wall time of training (earlier segments of a resumed run included)."""
        t, m = self.timeline, self.timeline.updates_per_step
        first, clock = self._begin(state)
        for index in range(first, t.n_updates):
            done, step = index + 1, (index + 1) // m  # updates done; effective steps done
            at_step = done % m == 0
            measure = at_step and step in t.eval_steps
            noise = at_step and step in t.noise_steps
            loss, before, grad_norm = self.update(index, measure)
            clock.tick()
            # Checked before every record, so that what a run records does not depend on when
            # its progress lines fall: evaluations and noise rows at steps s with s*m <= the
            # first non-finite update.
            if (measure or noise or clock.log_due()) and self.stop_diverged():
                break
            if measure:
                self.evaluate(step, before, grad_norm)
            if noise:
                self.measure_noise(step)
            if clock.log_due() or done == t.n_updates:
                clock.log(done, f"(epoch {done / m / t.steps_per_epoch:.2f})  {self.progress_text(loss)}")
            if checkpoint is not None and done < t.n_updates and checkpoint.due(done):
                checkpoint.save(self.state_dict(done, clock.elapsed()))
        return clock.elapsed()

    def _begin(self, state: dict | None) -> tuple[int, Progress]:
        """The update to start at and the progress clock: a fresh run records step 0 (and
        measures the noise there when due); a resumed one restores its state."""
        t, every = self.timeline, self.run["training"]["log_every_seconds"]
        self.model.train()
        if state is not None:
            first = self.load_state_dict(state)  # the on-device sums come from the state too
            log.info("resumed at update %d/%d (%.0f s of training before)", first, t.n_updates, state["elapsed_s"])
            return first, Progress("update", t.n_updates, first, state["elapsed_s"], every)
        clock = Progress("update", t.n_updates, 0, 0.0, every)  # the run's wall time starts here
        self.start_updates()
        self.evaluate(0)
        if 0 in t.noise_steps:
            self.measure_noise(0)
        return 0, clock


class Trainer(UpdateLoop):
    """One minibatch run: its data, model, optimizer, schedule, weight scale and record."""

    def __init__(self, run: dict, threads: int | None = None, device: torch.device | None = None):
        self.run = run
        tr, opt = run["training"], run["optimizer"]
        if threads:
            torch.set_num_threads(threads)
        self.device = device if device is not None else resolve_device(run["device"])
        dtype = DTYPES[tr["dtype"]]
        set_float32_precision(tr["tf32"])
        self.autocast = tr["autocast"] == "bfloat16"  # of the training forward pass only
        folder = Path(run["dataset_dir"])
        self.train, self.test, n_classes = device_splits(folder, self.device, dtype, tr["crop_padding"])
        model = initial_model(run["model"], tr, self.train.shape, n_classes, dtype)
        self.channels_last = use_channels_last(tr["channels_last"], self.device, model)
        layout = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=layout)
        self.train.channels_last = self.test.channels_last = self.channels_last
        self.layers = weight_layers(self.model)
        self.timeline = TimeLine.of(run, self.train.n)
        t = self.timeline
        self.svag = opt["svag"]
        self.micro_batch_size = tr["micro_batch_size"]
        self.schedule = run_schedule(run, t)
        self.streams = data_streams(run, self.train, t, self.device, tr["seed"])
        self.noise = noise_meter(run, self.train, t, self.device, tr["seed"])
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.trainable, opt, float(self.schedule.lr[0]))
        if self.schedule.buffer_init is not None:
            # The exact exponential counterpart starts its momentum buffer at kappa * w0.
            for p in self.trainable:
                self.optimizer.state[p]["momentum_buffer"] = self.schedule.buffer_init * p.detach().clone()
        invariant = self.model.scale_invariant and not is_adaptive(opt)
        self.scale = WeightScale(self.layers, tr["rescale_log2"] if invariant else None)
        self.recorder = Recorder(run["evaluation"], opt["momentum"], self.layers, self.train, self.test)

    def describe(self) -> str:
        run, t = self.run, self.timeline
        return (
            f"run {run['experiment']}/{run['run']}: {run['optimizer']['name']}, {run['model']['name']} on "
            f"{run['dataset']}, {t.n_updates} updates ({t.n_steps} effective steps, {t.steps_per_epoch} per epoch, "
            f"SVAG l={self.svag}), {len(t.eval_steps)} evaluations, device {self.device}"
        )

    # --- one update -----------------------------------------------------------------------

    def start_updates(self) -> None:
        """Start the on-device sums that ``update`` adds to (fit does it first)."""
        self.window = UpdateWindow(self.device, self._flat_weights())

    def _flat_weights(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in self.layers.values()])

    def update(self, index: int, measure: bool = False):
        """Optimizer update number ``index`` (0-based), with everything training does per update.

        Draws the batch(es), forward and backward (SVAG's joint loss when l > 1), sets this
        update's LR and WD, steps, and adds the loss and the angle moved to the window sums.
        With ``measure``, also returns the weights before the step and the gradient norm
        (one device sync). Returns (loss tensor, weights before or None, grad norm or nan).
        """
        if index % 50 == 0:
            self.scale.rescale(self.optimizer)
        # SVAG's two batches (x1, y1, x2, y2): coefficients of l (SGD) or l^2 (adaptive), the
        # noise per update m times SGD's
        batches = [t for stream in self.streams for t in stream.next()]
        self.optimizer.zero_grad(set_to_none=True)
        loss = accumulated_backward(
            lambda part: self._loss([b[part] for b in batches]), len(batches[1]), self.micro_batch_size
        )
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.schedule.lr[index]) * 4.0**-self.scale.log2
            group["weight_decay"] = float(self.schedule.wd[index]) * 4.0**self.scale.log2
        before, grad_norm = None, math.nan
        if measure:
            before = {k: p.detach().clone() for k, p in self.layers.items()}
            grads = [p.grad for p in self.optimizer.param_groups[0]["params"] if p.grad is not None]
            # True gradient: the stored weights are 2**-log2 times the true ones.
            norms = torch.stack([torch.linalg.vector_norm(g.double()) for g in grads])
            grad_norm = float(torch.linalg.vector_norm(norms)) * 2.0**-self.scale.log2
        optimizer_step(self.optimizer)
        loss = loss.detach()
        buffer_sq = momentum_buffer_square(self.optimizer, self.layers.values())
        self.window.add(
            index, loss, self._flat_weights(), None if buffer_sq is None else buffer_sq * 4.0**-self.scale.log2
        )
        return loss, before, grad_norm

    def _loss(self, batches: list[torch.Tensor]) -> torch.Tensor:
        """The mean training loss of (part of) this update's batch(es): cross-entropy, or
        SVAG's joint loss of its two batches."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            if self.svag == 1:
                return F.cross_entropy(self.model(batches[0]), batches[1])
            return svag_loss(self.model, *batches, self.timeline.updates_per_step)

    # --- measurements -----------------------------------------------------------------------

    def evaluate(self, step: int, before: dict | None = None, grad_norm: float = math.nan) -> None:
        """The evaluation row of effective step ``step``; the window sums start again."""
        t = self.timeline
        update = min(step * t.updates_per_step, t.n_updates - 1)  # the update in force at this step
        loss, angle, buffer_norm = self.window.close()
        last = {"window_loss": loss, "window_angle": angle, "before": before, "grad_norm": grad_norm,
                "buffer_norm": buffer_norm}  # fmt: skip
        lr, wd = float(self.schedule.lr[update]), float(self.schedule.wd[update])
        self.recorder.add_evaluation(self.model, step, step / t.steps_per_epoch, lr, wd, 2.0**self.scale.log2, last)

    def measure_noise(self, step: int) -> None:
        """Record G, N_B, N = tr Sigma_1 and B* at the current weights (gradient_noise.*)."""
        row = self.noise.measure(self.model, self.trainable, F.cross_entropy, 2.0**-self.scale.log2, step,
                                 self.scale.stored_norm() * 2.0**self.scale.log2)  # fmt: skip
        self.recorder.add_noise(step, row)

    @property
    def noise_seconds(self) -> float:
        return self.noise.seconds if self.noise else 0.0

    # --- resume state --------------------------------------------------------------------

    def state_dict(self, next_update: int, elapsed_s: float) -> dict:
        """Everything the loop needs to continue at ``next_update`` as if never stopped."""
        return {
            "next_update": next_update,
            "elapsed_s": elapsed_s,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "streams": [s.state_dict() for s in self.streams],
            "noise_generator": self.noise.generator.get_state() if self.noise else None,
            "noise_seconds": self.noise_seconds,
            **self.scale.state_dict(),
            **self.recorder.state_dict(),
            **self.window.state_dict(),
        }

    def load_state_dict(self, state: dict) -> int:
        """Restore a ``state_dict``; returns the update to continue at."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scale.load_state_dict(state)
        self.recorder.load_state_dict(state)
        for stream, saved in zip(self.streams, state["streams"]):
            stream.load_state_dict(saved)
        if self.noise:
            self.noise.generator.set_state(state["noise_generator"].cpu())
            self.noise.seconds = state["noise_seconds"]
        self.window = UpdateWindow(self.device, self._flat_weights())
        self.window.load_state_dict(state)
        return state["next_update"]

    # --- the loop -----------------------------------------------------------------------

    def fit(self, state: dict | None = None, checkpoint=None) -> dict:
        """Train to the end (or to divergence); return the status attributes.

        ``state``: a ``state_dict`` to continue from. ``checkpoint``: when to save the resume
        state, and a stop request from a signal (``engine.checkpoint.Checkpointing``).
        """
        self.outcome = run_outcome()
        wall = self.train_loop(state, checkpoint)  # (stop_diverged sets the outcome)
        return self._status(self.outcome, wall)

    def stop_diverged(self) -> bool:
        """At a check point: has the loss or a weight become non-finite? (one device sync)"""
        bad = int(self.window.first_bad)
        if bad < 0:
            return False
        self.outcome = run_outcome(bad, self.timeline.updates_per_step)
        log.warning("loss or weights became non-finite at update %d: run marked diverged", bad)
        return True

    def progress_text(self, loss: torch.Tensor) -> str:
        return f"minibatch loss {float(loss):.4f}  test acc {self.recorder.rows['test_accuracy'][-1]:.4f}"

    def _status(self, status: dict, wall: float) -> dict:
        """The run file's status and cost attributes."""
        t, completed = self.timeline, status["status"] == "completed"
        done = self.recorder.rows["step"][-1] * t.updates_per_step if completed else status["diverged_update"]
        train_time = wall - self.noise_seconds
        return {
            **status,
            "steps_per_second": done / train_time if train_time > 0 else math.nan,
            "wall_time_s": wall,
            "noise_measurement_time_s": self.noise_seconds,
            "device": describe_device(self.device),
            "total_steps": t.n_steps,
            "total_updates": t.n_updates,
            "channels_last": int(self.channels_last),
            "steps_per_epoch": t.steps_per_epoch,
            "torch_version": torch.__version__,
        }

    def dataset(self, status: dict):
        """The run file's dataset (``engine.runfile.run_dataset``)."""
        return run_dataset(self.recorder.rows, list(self.layers), self.run, status, self.recorder.noise_rows)
