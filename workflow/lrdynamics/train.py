"""The training engine: one resolved run config in, one netCDF file out.

SGD with PyTorch semantics (``torch.optim.SGD``: coupled weight decay, momentum buffer
without the LR), or Adam/RMSprop (``torch.optim.Adam``, coupled weight decay; RMSprop is
beta1 = 0), LR and WD set per step from a precomputed schedule. The dataset lives
on the device as one normalized tensor (padded once when cropping); each epoch draws a
``randperm`` on the device and slices batches; crop and flip act on whole batches. No
per-sample Python, no DataLoader.

Command line (outside Snakemake)::

    python -m lrdynamics.train RUN_CONFIG.json OUT.nc

where RUN_CONFIG is a resolved run config: the JSON in any output's ``config_json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lrdynamics.adaptive import adaptive_svag_hyperparameters, is_adaptive, updates_per_step
from lrdynamics.augment import random_crop, random_flip
from lrdynamics.checkpoint import config_fingerprint, load_state, remove_state, resume_path, save_state
from lrdynamics.config import deep_merge, run_config_json, schema_defaults
from lrdynamics.data import load_prepared
from lrdynamics.devices import gpu_slot, resolve_device, set_float32_precision, use_channels_last
from lrdynamics.gradient_noise import (
    critical_batch_size,
    measure_signal_and_noise,
    noise_batches,
    per_example_noise,
)
from lrdynamics.intrinsic import angular_update, chord_angle, effective_lr, intrinsic_lr, unit_direction
from lrdynamics.models import build_model, kept_normalization_statistics, weight_layers
from lrdynamics.record import NOISE_VARIABLES, OPTIONAL_VARIABLES, VARIABLES, run_dataset, write_atomic
from lrdynamics.schedules import build_schedule, steps_per_epoch, to_steps, total_steps
from lrdynamics.svag import svag_loss

log = logging.getLogger("lrdynamics.train")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class DeviceData:
    """A prepared split resident on the device, normalized (and padded for cropping)."""

    def __init__(self, record: dict, device, dtype, padding: int = 0):
        images = record["images"].to(device=device)
        self.labels = record["labels"].to(device=device)
        self.side = images.shape[-1]
        self.padding = padding
        x = images.to(dtype) / 255.0
        if padding:
            # torchvision's RandomCrop pads with zeros in pixel space, before normalization.
            x = F.pad(x, (padding,) * 4, value=0.0)
        mean = torch.tensor(record["mean"], dtype=dtype, device=device)[None, :, None, None]
        std = torch.tensor(record["std"], dtype=dtype, device=device)[None, :, None, None]
        self.images = (x - mean) / std
        self.n = len(self.labels)
        self.shape = (images.shape[1], self.side, self.side)
        self.channels_last = False  # batches in the model's layout (set by Training)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def batch(self, idx, crop: bool, flip: bool, generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx]
        if crop:
            x = random_crop(x, self.side, generator)
        elif self.padding:
            p = self.padding
            x = x[:, :, p:-p, p:-p]
        if flip:
            x = random_flip(x, generator)
        return self._layout(x), self.labels[idx]

    def unpadded(self, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.n if n is None else min(n, self.n)
        x = self.images[:n]
        if self.padding:
            p = self.padding
            x = x[:, :, p:-p, p:-p]
        return self._layout(x), self.labels[:n]


@torch.no_grad()
def predict(model, images, batch_size: int) -> torch.Tensor:
    """Logits in eval mode (running normalization statistics), in batches."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return out


@torch.no_grad()
def evaluate(model, images, labels, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode."""
    out = predict(model, images, batch_size)
    loss = float(F.cross_entropy(out.double(), labels, reduction="sum")) / len(labels)
    return loss, float((out.argmax(1) == labels).sum()) / len(labels)


def build_optimizer(params, optimizer: dict, lr: float) -> torch.optim.Optimizer:
    """torch.optim.SGD, or torch.optim.Adam for adam/rmsprop with adaptive SVAG's betas and
    eps for l = optimizer.svag (LR and WD are set per update from the schedule)."""
    if is_adaptive(optimizer):
        h = adaptive_svag_hyperparameters(
            lr, optimizer["beta1"], optimizer["beta2"], optimizer["eps"], optimizer["svag"]
        )
        return torch.optim.Adam(params, lr=lr, betas=(h["beta1"], h["beta2"]), eps=h["eps"])
    return torch.optim.SGD(params, lr=lr, momentum=optimizer["momentum"])


def cadence_steps(every: float, unit: str, steps_in_epoch: int, n_steps: int) -> list[int]:
    """Effective steps at which something is measured: 0, every k, the end."""
    k = max(1, to_steps(every, unit, steps_in_epoch))
    return sorted(set(range(0, n_steps, k)) | {n_steps})


def evaluation_steps(run: dict, steps_in_epoch: int, n_steps: int) -> list[int]:
    """Effective steps (updates done / l) at which the run is evaluated: 0, every k, the end."""
    ev = run["evaluation"]
    return cadence_steps(ev["every"], ev["unit"], steps_in_epoch, n_steps)


class BatchStream:
    """Minibatches in epochs of a fresh ``randperm`` (drawn on the device), augmented.

    SGD draws from one stream; SVAG's second batch comes from a second stream with its
    own generator, so the two batches of an update are independent.
    """

    def __init__(self, data: DeviceData, batch_size: int, steps_in_epoch: int, crop, flip, generator):
        self.data, self.B, self.steps_in_epoch = data, batch_size, steps_in_epoch
        self.crop, self.flip, self.generator = crop, flip, generator
        self.pos, self.perm = 0, None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos == 0:
            self.perm = torch.randperm(self.data.n, device=self.data.images.device, generator=self.generator)
        idx = self.perm[self.pos * self.B : (self.pos + 1) * self.B]
        self.pos = (self.pos + 1) % self.steps_in_epoch
        return self.data.batch(idx, self.crop, self.flip, self.generator)


class Training:
    """One training run: model, data, optimizer, schedule and the record being built."""

    def __init__(self, run: dict, threads: int | None = None, device: torch.device | None = None):
        self.run = run
        tr = run["training"]
        if threads:
            torch.set_num_threads(threads)
        self.device = device if device is not None else resolve_device(run["device"])
        self.dtype = DTYPES[tr["dtype"]]
        set_float32_precision(tr["tf32"])
        # bf16 autocast of the training forward pass (never of evaluation or measurements).
        self.autocast = tr["autocast"]
        ds_dir = Path(run["dataset_dir"])
        train_rec, test_rec = load_prepared(ds_dir / "train.pt"), load_prepared(ds_dir / "test.pt")
        self.classes = train_rec["classes"]
        self.train = DeviceData(train_rec, self.device, self.dtype, padding=tr["crop_padding"])
        self.test = DeviceData(test_rec, self.device, self.dtype)

        # Initial weights depend only on the seed: built on the CPU, then moved.
        torch.manual_seed(tr["seed"])
        self.model = build_model(run["model"], self.train.shape, len(self.classes)).to(self.dtype)
        if tr["init_scale"] != 1.0:
            with torch.no_grad():
                for p in weight_layers(self.model).values():
                    p.mul_(tr["init_scale"])
        if tr["perturb_init"]:
            with torch.no_grad():  # one ulp up: the chaos floor of equivalence tests
                for p in self.model.parameters():
                    p.copy_(torch.nextafter(p, torch.full_like(p, math.inf)))
        self.channels_last = use_channels_last(tr["channels_last"], self.device, self.model)
        self.model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self.train.channels_last = self.test.channels_last = self.channels_last
        self.layers = weight_layers(self.model)
        # Steps and epochs are effective ones: updates / m, with m = l under SGD's SVAG,
        # l^2 under adaptive SVAG, 1 otherwise.
        self.steps_in_epoch = steps_per_epoch(self.train.n, tr["batch_size"], tr["drop_last"])
        self.n_steps = total_steps(tr["epochs"], self.steps_in_epoch)
        self.svag = run["optimizer"].get("svag", 1)
        self.updates_per_step = updates_per_step(run["optimizer"])
        self.n_updates = self.n_steps * self.updates_per_step
        self.momentum = run["optimizer"]["momentum"]
        self.schedule = build_schedule(
            run["schedule"], self.steps_in_epoch, self.n_steps, self.momentum, self.svag, self.updates_per_step
        )
        self.eval_steps = evaluation_steps(run, self.steps_in_epoch, self.n_steps)
        # Data order and augmentation: one generator per stream, seeded from the run's seed.
        crop, flip = tr["crop_padding"] > 0, tr["flip"]
        streams = [1_000_003, 2_000_003] if self.svag > 1 else [1_000_003]
        self.streams = []
        for offset in streams:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(tr["seed"] + offset)
            self.streams.append(BatchStream(self.train, tr["batch_size"], self.steps_in_epoch, crop, flip, generator))
        gn = run.get("gradient_noise", {})
        self.noise_steps = (
            cadence_steps(gn["every"], gn["unit"], self.steps_in_epoch, self.n_steps) if gn.get("every") else []
        )
        if self.noise_steps:
            self.noise_generator = torch.Generator(device=self.device)
            self.noise_generator.manual_seed(tr["seed"] + 3_000_017)
            self.noise_num = noise_batches(tr["batch_size"], gn["batches"])
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(trainable, run["optimizer"], float(self.schedule.lr[0]))
        if self.schedule.buffer_init is not None:
            # The exact exponential counterpart starts its momentum buffer at kappa * w0.
            for p in trainable:
                self.optimizer.state[p]["momentum_buffer"] = self.schedule.buffer_init * p.detach().clone()
        # True weights are the stored ones times 2**log2_scale (see rescale_weights).
        self.log2_scale = 0
        self.initial_norm = self._stored_norm()
        self.records: dict[str, list] = {k: [] for k in ["step", "epoch", *VARIABLES, *OPTIONAL_VARIABLES]}
        self.noise_records: dict[str, list] = {k: [] for k in ["noise_step", *NOISE_VARIABLES]}
        self.noise_seconds = 0.0

    # --- exact rescaling of scale-invariant weights -------------------------------

    def _stored_norm(self) -> float:
        return float(torch.linalg.vector_norm(torch.stack([p.detach().double().norm() for p in self.layers.values()])))

    def rescale_weights(self) -> None:
        """Keep a scale-invariant net's weights in range by dividing them by 2**k.

        The function is unchanged (scale invariance) and so is the trajectory: with
        w' = w/s the gradient is s*grad, so the momentum buffer becomes s*v, the LR lr/s^2
        and the (coupled) WD wd*s^2. With s a power of two every product is exact in
        floating point, so the rescaled run is the same run, bit for bit in practice.
        """
        limit = self.run["training"]["rescale_log2"]
        if limit is None or not self.model.scale_invariant or is_adaptive(self.run["optimizer"]):
            return
        ratio = math.log2(self._stored_norm() / self.initial_norm)
        if abs(ratio) <= limit:
            return
        k = round(ratio)
        with torch.no_grad():
            for p in self.layers.values():
                p.mul_(2.0**-k)
                buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(2.0**k)
        self.log2_scale += k
        log.info("rescaled the weights by 2^%d (true scale now 2^%d) to stay in range", -k, self.log2_scale)

    # --- measurement ---------------------------------------------------------------

    @torch.no_grad()
    def recalibrate_batch_norm(self, n: int) -> None:
        """Re-estimate BN running statistics on the first n training images (the caller keeps
        the old ones with ``kept_normalization_statistics``)."""
        bns = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
        self.model.train()
        images, _ = self.train.unpadded(n)
        for i in range(0, len(images), self.run["evaluation"]["batch_size"]):
            self.model(images[i : i + self.run["evaluation"]["batch_size"]])
        for m, mom in zip(bns, momenta):
            m.momentum = mom

    def _flat_weights(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in self.layers.values()])

    def _record(
        self, step: int, window_loss: float, before: dict | None, grad_norm: float, window_angle: float = math.nan
    ) -> None:
        r, ev = self.records, self.run["evaluation"]
        t = min(step * self.updates_per_step, self.n_updates - 1)  # the update in force at this effective step
        lr, wd = float(self.schedule.lr[t]), float(self.schedule.wd[t])
        r["step"].append(step)
        r["epoch"].append(step / self.steps_in_epoch)
        with kept_normalization_statistics(self.model):  # recalibration must not touch training
            if ev["bn_recalibration_samples"]:
                self.recalibrate_batch_norm(ev["bn_recalibration_samples"])
            for split, data, n in (("train", self.train, ev["train_samples"]), ("test", self.test, ev["test_samples"])):
                loss, acc = evaluate(self.model, *data.unpadded(n), ev["batch_size"])
                r[f"{split}_loss"].append(loss)
                r[f"{split}_accuracy"].append(acc)
            if ev["logit_samples"]:
                images, _ = self.test.unpadded(ev["logit_samples"])
                r["test_logits"].append(predict(self.model, images, ev["batch_size"]).double().cpu().numpy())
            if ev["prediction_samples"]:
                images, _ = self.test.unpadded(ev["prediction_samples"])
                r["test_predictions"].append(predict(self.model, images, ev["batch_size"]).argmax(1).cpu().numpy())
        r["minibatch_loss"].append(window_loss)
        r["learning_rate"].append(lr)
        r["weight_decay"].append(wd)
        r["intrinsic_lr"].append(intrinsic_lr(lr, wd, self.momentum))
        scale = 2.0**self.log2_scale
        norms = [float(p.detach().double().norm()) * scale for p in self.layers.values()]
        total = math.sqrt(sum(n * n for n in norms))
        r["weight_norm"].append(norms)
        r["total_weight_norm"].append(total)
        r["effective_lr"].append([effective_lr(lr, n) for n in norms])
        r["total_effective_lr"].append(effective_lr(lr, total))
        if before is None:
            r["angular_update"].append([math.nan] * len(norms))
            r["total_angular_update"].append(math.nan)
        else:
            after = {k: p.detach() for k, p in self.layers.items()}
            r["angular_update"].append([angular_update(before[k], after[k]) for k in self.layers])
            r["total_angular_update"].append(window_angle)
        r["grad_norm"].append(grad_norm)

    def measure_noise(self, step: int) -> None:
        """Record G, N_B, N = tr Sigma_1 and B* at the current weights (gradient_noise.*).

        Independent uniform B-subsets (each its own randperm) with the run's augmentation,
        from a generator of their own: the training data order is untouched.
        """
        tic = time.perf_counter()
        tr, gn = self.run["training"], self.run["gradient_noise"]
        B, crop, flip = tr["batch_size"], tr["crop_padding"] > 0, tr["flip"]

        def batches():
            for _ in range(self.noise_num):
                idx = torch.randperm(self.train.n, device=self.device, generator=self.noise_generator)[:B]
                yield self.train.batch(idx, crop, flip, self.noise_generator)

        params = [p for p in self.model.parameters() if p.requires_grad]
        signal, batch_noise = measure_signal_and_noise(self.model, F.cross_entropy, batches(), params)
        # Gradients of the true weights: the stored ones are 2**-log2_scale times them.
        signal, batch_noise = signal * 4.0**-self.log2_scale, batch_noise * 4.0**-self.log2_scale
        noise = per_example_noise(batch_noise, min(B, self.train.n), self.train.n)
        r = self.noise_records
        r["noise_step"].append(step)
        r["gradient_signal"].append(signal)
        r["batch_gradient_noise"].append(batch_noise)
        r["gradient_noise"].append(noise)
        r["critical_batch_size"].append(critical_batch_size(noise, signal, gn["threshold_c"]))
        seconds = time.perf_counter() - tic
        self.noise_seconds += seconds
        log.info(
            "step %d: gradient signal G %.4g, noise tr Sigma_1 %.4g, critical batch size %.4g (%d batches, %.1f s)",
            step, signal, noise, r["critical_batch_size"][-1], self.noise_num, seconds,
        )  # fmt: skip

    # --- the loop ------------------------------------------------------------------

    def start_updates(self) -> None:
        """Reset the on-device accumulators that ``update`` adds to (fit calls it first)."""
        dev = self.device
        self.window_sum = torch.zeros((), dtype=torch.float64, device=dev)
        self.angle_sum = torch.zeros((), dtype=torch.float64, device=dev)  # per-update angles, summed on device
        self.window_n = 0
        # Divergence is tracked on the device (no sync per update): the first bad update.
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=dev)
        # The direction after one update is the one before the next: rescaling in between only
        # multiplies the weights by a power of two, which leaves their direction as is.
        self.direction = unit_direction(self._flat_weights())

    def update(self, index: int, measure: bool = False):
        """Optimizer update number ``index`` (0-based), with everything training does per update.

        Draws the batch(es), forward and backward (SVAG's joint loss when l > 1), sets this
        update's LR and WD, steps, and adds the loss and the angle moved to the window sums.
        With ``measure``, also returns the weights before the step and the gradient norm
        (one device sync). Returns (loss tensor, weights before or None, grad norm or nan).
        """
        if index % 50 == 0:
            self.rescale_weights()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast == "bfloat16"):
            if self.svag == 1:
                x, y = self.streams[0].next()
                loss = F.cross_entropy(self.model(x), y)
            else:
                # coefficients of l (SGD) or l^2 (adaptive): the noise per update is m times SGD's
                loss = svag_loss(self.model, *self.streams[0].next(), *self.streams[1].next(), self.updates_per_step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.schedule.lr[index]) * 4.0**-self.log2_scale
            group["weight_decay"] = float(self.schedule.wd[index]) * 4.0**self.log2_scale
        before, grad_norm = None, math.nan
        if measure:
            before = {k: p.detach().clone() for k, p in self.layers.items()}
            grads = [p.grad for p in self.optimizer.param_groups[0]["params"] if p.grad is not None]
            # True gradient: the stored weights are 2**-log2_scale times the true ones.
            grad_norm = (
                float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double()) for g in grads])))
                * 2.0**-self.log2_scale
            )
        self.optimizer.step()
        direction = unit_direction(self._flat_weights())
        angle = chord_angle(self.direction, direction)  # NaN once a weight is inf or NaN
        self.angle_sum += angle
        self.direction = direction
        loss = loss.detach()
        bad = ~torch.isfinite(loss) | ~torch.isfinite(angle)
        self.first_bad = torch.where(bad & (self.first_bad < 0), index, self.first_bad)
        self.window_sum += loss
        self.window_n += 1
        return loss, before, grad_norm

    # --- resume state ------------------------------------------------------------------

    def state_dict(self, next_update: int, elapsed_s: float) -> dict:
        """Everything the loop needs to continue at ``next_update`` as if never stopped."""
        return {
            "fingerprint": config_fingerprint(run_config_json(self.run)),
            "next_update": next_update,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "log2_scale": self.log2_scale,
            "initial_norm": self.initial_norm,
            "records": self.records,
            "noise_records": self.noise_records,
            "streams": [{"pos": s.pos, "perm": s.perm, "generator": s.generator.get_state()} for s in self.streams],
            "noise_generator": self.noise_generator.get_state() if self.noise_steps else None,
            "window_sum": self.window_sum,
            "angle_sum": self.angle_sum,
            "window_n": self.window_n,
            "first_bad": self.first_bad,
            "direction": self.direction,
            "elapsed_s": elapsed_s,
            "noise_seconds": self.noise_seconds,
        }

    def load_state_dict(self, state: dict) -> int:
        """Restore a ``state_dict``; returns the update to continue at."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.log2_scale, self.initial_norm = state["log2_scale"], state["initial_norm"]
        self.records, self.noise_records = state["records"], state["noise_records"]
        for stream, saved in zip(self.streams, state["streams"]):
            stream.pos, stream.perm = saved["pos"], saved["perm"]
            stream.generator.set_state(saved["generator"].cpu())  # generator states live on the CPU
        if self.noise_steps:
            self.noise_generator.set_state(state["noise_generator"].cpu())
        for key in ("window_sum", "angle_sum", "window_n", "first_bad", "direction", "noise_seconds"):
            setattr(self, key, state[key])
        return state["next_update"]

    # --- the loop ------------------------------------------------------------------------

    def fit(self, state: dict | None = None, checkpoint=None) -> dict:
        """Train to the end (or to divergence); return the status attributes.

        ``state``: a ``state_dict`` to continue from. ``checkpoint``: a ``Checkpointing``
        (when to save the resume state, and a stop request from a signal).
        """
        tr = self.run["training"]
        l = self.updates_per_step
        eval_set, noise_set = set(self.eval_steps), set(self.noise_steps)
        status = {"status": "completed", "diverged_step": -1, "diverged_update": -1}
        self.model.train()
        if state is None:
            first = 0
            self._record(0, math.nan, None, math.nan)
            if 0 in noise_set:
                self.measure_noise(0)
            self.start_updates()
            elapsed_before = 0.0
        else:
            first = self.load_state_dict(state)  # the accumulators come from the state
            elapsed_before = state["elapsed_s"]
            log.info("resumed at update %d/%d (%.0f s of training before)", first, self.n_updates, elapsed_before)
        start = last_log = time.perf_counter() - elapsed_before
        for index in range(first, self.n_updates):
            done, step = index + 1, (index + 1) // l  # updates done; effective steps done
            at_step = done % l == 0
            measure = at_step and step in eval_set
            loss, before, grad_norm = self.update(index, measure)
            now = time.perf_counter()
            if measure or now - last_log >= tr["log_every_seconds"]:
                bad_update = int(self.first_bad)
                if bad_update >= 0:
                    status = {"status": "diverged", "diverged_step": bad_update // l, "diverged_update": bad_update}
                    log.warning("loss or weights became non-finite at update %d: run marked diverged", bad_update)
                    break
            if measure:
                n = self.window_n
                self._record(step, float(self.window_sum) / n, before, grad_norm, float(self.angle_sum) / n)
                self.window_sum.zero_()
                self.angle_sum.zero_()
                self.window_n = 0
            if at_step and step in noise_set:
                self.measure_noise(step)
            if now - last_log >= tr["log_every_seconds"] or done == self.n_updates:
                last_log = now
                rate = (done - first) / max(now - start - elapsed_before, 1e-9)
                epoch, test_acc = done / l / self.steps_in_epoch, self.records["test_accuracy"][-1]
                log.info(
                    "update %d/%d (epoch %.2f)  minibatch loss %.4f  test acc %.4f  %.1f updates/s  ETA %.0f s",
                    done, self.n_updates, epoch, float(loss), test_acc, rate, (self.n_updates - done) / rate,
                )  # fmt: skip
            if checkpoint is not None and done < self.n_updates and checkpoint.due(done):
                checkpoint.save(self.state_dict(done, time.perf_counter() - start))
        wall = time.perf_counter() - start
        updates_done = self.records["step"][-1] * l if status["status"] == "completed" else status["diverged_update"]
        train_time = wall - self.noise_seconds
        status.update(
            steps_per_second=updates_done / train_time if train_time > 0 else math.nan,
            wall_time_s=wall,
            noise_measurement_time_s=self.noise_seconds,
            device=str(self.device)
            + (f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else ""),
            total_steps=self.n_steps,
            total_updates=self.n_updates,
            channels_last=int(self.channels_last),
            steps_per_epoch=self.steps_in_epoch,
            torch_version=torch.__version__,
        )
        return status

    def dataset(self, status: dict):
        return run_dataset(self.records, list(self.layers), self.run, status, self.noise_records)


class Interrupted(Exception):
    """Training stopped on a signal after saving its resume state."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signal.Signals(signum).name}; resume state saved")
        self.signum = signum


class Checkpointing:
    """When to save the resume state: every ``every_updates`` updates, every
    ``every_seconds`` of wall time, and at once when SIGTERM, SIGINT or SIGUSR1 (SLURM's
    warning before the time limit) arrives; after a signal's save the loop stops."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def __init__(self, path: Path, every_updates: int | None, every_seconds: float | None):
        self.path, self.every_updates, self.every_seconds = path, every_updates, every_seconds
        self.last = time.monotonic()
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers only there
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame):
        log.warning("received %s: saving the resume state at the end of this update", signal.Signals(signum).name)
        self.signum = signum

    def due(self, done: int) -> bool:
        if self.signum is not None:
            return True
        if self.every_updates and done % self.every_updates == 0:
            return True
        return self.every_seconds is not None and time.monotonic() - self.last >= self.every_seconds

    def save(self, state: dict) -> None:
        save_state(state, self.path)
        self.last = time.monotonic()
        log.info("resume state saved at update %d (%s)", state["next_update"], self.path)
        if self.signum is not None:
            raise Interrupted(self.signum)


def train(
    run: dict,
    out_path,
    threads: int | None = None,
    jobs_per_gpu: int | None = None,
    checkpoint_every_updates: int | None = None,
    checkpoint_every_seconds: float | None = 600.0,
):
    """Run one training and write its netCDF file; return the dataset.

    ``jobs_per_gpu``: on a workstation with GPUs, share each GPU with at most this many
    jobs (see ``lrdynamics.devices.gpu_slot``); None uses the device as resolved.
    Resume state (``lrdynamics.checkpoint``) is saved every ``checkpoint_every_updates``
    updates and every ``checkpoint_every_seconds``, and on SIGTERM/SIGINT/SIGUSR1, after
    which ``Interrupted`` is raised. A rerun continues from it; it is removed once the
    output is written.
    """
    with gpu_slot(run["device"], jobs_per_gpu) as device:
        return _train(run, out_path, threads, device, checkpoint_every_updates, checkpoint_every_seconds)


def _train(run: dict, out_path, threads, device, every_updates, every_seconds):
    training = Training(run, threads, device)
    state_path = resume_path(out_path)
    state = load_state(state_path, config_fingerprint(run_config_json(run)), training.device)
    log.info(
        "run %s/%s: %s, %s on %s, %d updates (%d effective steps, %d per epoch, SVAG l=%d), %d evaluations, device %s",
        run["experiment"], run["run"], run["optimizer"]["name"], run["model"]["name"], run["dataset"],
        training.n_updates, training.n_steps, training.steps_in_epoch, training.svag, len(training.eval_steps),
        training.device,
    )  # fmt: skip
    with Checkpointing(state_path, every_updates, every_seconds) as checkpoint:
        status = training.fit(state, checkpoint)
    ds = training.dataset(status)
    write_atomic(ds, out_path)
    remove_state(state_path)
    log.info(
        "wrote %s (%s, %.1f steps/s, %.1f s)",
        out_path,
        status["status"],
        status["steps_per_second"],
        status["wall_time_s"],
    )
    return ds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrdynamics.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_config", help="resolved run config (JSON; the config_json of any run file)")
    parser.add_argument("out", help="output netCDF path")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--checkpoint-every-updates", type=int, default=None, help="save resume state this often")
    parser.add_argument(
        "--checkpoint-every-seconds", type=float, default=600.0, help="save resume state this often (wall time)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with open(args.run_config) as f:
            run = json.load(f)
        missing = [k for k in ("experiment", "run", "device", "dataset_dir", "model", "training") if k not in run]
    except (OSError, json.JSONDecodeError) as err:
        parser.error(f"run config {args.run_config}: {err}")
    if missing:
        parser.error(
            f"run config {args.run_config}: not a resolved run config (missing {', '.join(missing)}); "
            "use the config_json attribute of a run file"
        )
    # The config_json of a run file written before a key existed lacks it: the default is used.
    run = deep_merge(schema_defaults({"$ref": "#/$defs/run"}), run)
    try:
        train(run, args.out, args.threads, None, args.checkpoint_every_updates, args.checkpoint_every_seconds)
    except Interrupted as stop:
        log.warning("%s; rerun the same command to continue", stop)
        return 128 + stop.signum
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
