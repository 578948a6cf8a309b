"""Seed ensembles: the K runs of one grid point (``training.ensemble``) trained together.

The members' weights, buffers and optimizer state are stacked along a leading member
dimension and every update is one vectorized forward and backward pass
(``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``: a batched matmul, a
grouped convolution per layer instead of K small ones). Each member is still exactly the
run of its seed alone (``engine.contract.member_run``):

- its own initial weights, data order, augmentation, SVAG and gradient-noise streams,
  each drawn from a generator seeded as the single run seeds it, in the same order;
- its own batch-norm statistics and running averages (the buffers are stacked too and
  updated in place under vmap);
- its own optimizer state: the updates of SGD and Adam are elementwise, so on stacked
  tensors they are K independent updates; SGD's LR and WD are per member because a
  member's weight rescaling (``trainer.WeightScale``) is its own;
- the summed loss's gradient with respect to member k's slice is member k's gradient.

Members differ from their single runs by float rounding only (batched kernels sum in
another order); tests/test_ensemble.py checks them in float64. Evaluations and
gradient-noise measurements are vectorized too (every member's eval-mode logits on the same
images in one pass; every member's measurement minibatches, each from its own meter, in one
forward and backward), and each member's row is written by the single run's own code
(``Recorder.add_row``, ``NoiseMeter.row``). Only BN recalibration runs member by member,
on one scratch module that holds the member's weights and buffers. A member whose loss or
weights become non-finite is marked diverged at the next check (evaluation or progress
line) and recorded no more; the others go on.

K larger than memory allows trains in consecutive chunks of members (``ensemble_chunk``,
or as many as half the free memory holds): the members are independent, so the result
is the same.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

from lrdynamics.engine.adaptive import is_adaptive
from lrdynamics.engine.batches import BatchStream
from lrdynamics.engine.combine import ensemble_dataset
from lrdynamics.engine.contract import ensemble_size, member_run, member_seeds, run_outcome
from lrdynamics.engine.devices import DTYPES, describe_device, resolve_device, set_float32_precision
from lrdynamics.engine.gradient_noise import signal_and_noise
from lrdynamics.engine.models import kept_normalization_statistics, weight_layers
from lrdynamics.engine.optimizers import build_optimizer, optimizer_step, svag_loss
from lrdynamics.engine.quantities import chord_angle, unit_direction
from lrdynamics.engine.recording import Recorder
from lrdynamics.engine.runfile import run_dataset
from lrdynamics.engine.trainer import (
    TimeLine,
    UpdateLoop,
    UpdateWindow,
    accumulated_backward,
    data_streams,
    device_splits,
    initial_model,
    noise_meter,
    rescale_exponent,
    run_schedule,
)

log = logging.getLogger(__name__)


class StackedSGD:
    """``torch.optim.SGD`` (coupled WD, the momentum buffer without the LR, no dampening or
    Nesterov) on tensors stacked along the member dimension, with a LR and WD per member."""

    def __init__(self, params: list[torch.Tensor], momentum: float):
        self.params, self.momentum = params, momentum
        self.buffers: list[torch.Tensor | None] = [None] * len(params)

    def buffer_of(self, p: torch.Tensor) -> torch.Tensor | None:
        return self.buffers[next(i for i, q in enumerate(self.params) if q is p)]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lrs: list[float], wds: list[float]) -> None:
        like = self.params[0]  # every stacked tensor has its dtype and device
        lr, wd = (torch.tensor(v, dtype=like.dtype, device=like.device) for v in (lrs, wds))
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            shape = (-1, *([1] * (p.ndim - 1)))  # one value per member, broadcast over its slice
            d = p.grad + wd.view(shape) * p
            if self.momentum:
                if self.buffers[i] is None:
                    self.buffers[i] = d.clone()
                else:
                    self.buffers[i].mul_(self.momentum).add_(d)
                d = self.buffers[i]
            p.sub_(lr.view(shape) * d)

    def state_dict(self) -> dict:
        return {"buffers": self.buffers}

    def load_state_dict(self, state: dict) -> None:
        self.buffers = list(state["buffers"])


class StackedAdam:
    """``torch.optim.Adam`` on the stacked tensors: its update is elementwise, so it is each
    member's own Adam. The members share LR and WD (adaptive runs never rescale)."""

    def __init__(self, params: list[torch.Tensor], optimizer: dict, lr: float):
        self.optimizer = build_optimizer(params, optimizer, lr)
        self.zero_grad = lambda: self.optimizer.zero_grad(set_to_none=True)

    def buffer_of(self, p: torch.Tensor) -> None:
        return None

    def step(self, lrs: list[float], wds: list[float]) -> None:
        for group in self.optimizer.param_groups:
            group["lr"], group["weight_decay"] = lrs[0], wds[0]
        optimizer_step(self.optimizer)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


def _member_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The norm of each member's slice of all ``tensors`` together, in float64."""
    norms = torch.stack([torch.linalg.vector_norm(t.detach().double().flatten(1), dim=1) for t in tensors])
    return torch.linalg.vector_norm(norms, dim=0)


class MemberScales:
    """``trainer.WeightScale`` per member: member k's true weights are its stored ones times
    ``2**log2[k]``, its applied LR 4^-log2[k] and WD 4^log2[k] times the schedule's."""

    def __init__(self, layers: list[torch.Tensor], limit: int | None):
        self.layers, self.limit = layers, limit
        self.initial_norm = _member_norms(layers).tolist()
        self.log2 = [0] * len(self.initial_norm)

    def rescale(self, optimizer) -> None:
        if self.limit is None:
            return
        norms = _member_norms(self.layers).tolist()
        for k, (norm, initial) in enumerate(zip(norms, self.initial_norm)):
            j = rescale_exponent(norm, initial, self.limit)
            if not j:
                continue
            with torch.no_grad():
                for p in self.layers:
                    p[k].mul_(2.0**-j)
                    buf = optimizer.buffer_of(p)
                    if buf is not None:
                        buf[k].mul_(2.0**j)
            self.log2[k] += j
            log.info("member %d: rescaled the weights by 2^%d (true scale now 2^%d)", k, -j, self.log2[k])

    def state_dict(self) -> dict:
        return {"log2_scale": self.log2, "initial_norm": self.initial_norm}

    def load_state_dict(self, state: dict) -> None:
        self.log2, self.initial_norm = list(state["log2_scale"]), list(state["initial_norm"])


class MemberWindow(UpdateWindow):
    """``trainer.UpdateWindow`` with a leading member dimension: per member, the summed
    minibatch losses and angles since the last evaluation, and its first non-finite update."""

    _direction = staticmethod(functools.partial(unit_direction, dim=1))
    _angle = staticmethod(functools.partial(chord_angle, dim=1))

    def close(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each member's mean loss and angle per update since the last call and the root
        mean square of its buffer's norm, then reset."""
        n = self.window_n
        means = tuple((t / n if n else torch.full_like(t, math.nan)).cpu().numpy() for t in (self.window_sum,
                      self.angle_sum, self.buffer_sum))  # fmt: skip
        self._reset()
        return means[0], means[1], np.sqrt(means[2])


class Members(UpdateLoop):
    """Some members of an ensemble, trained at once: their stacked state, one vectorized
    update, and each member's streams, scale, record and status."""

    def __init__(self, run: dict, seeds: list[int], device, train, test, n_classes: int):
        self.run, self.seeds, self.device = run, seeds, device
        tr, opt = run["training"], run["optimizer"]
        dtype = DTYPES[tr["dtype"]]
        self.train, self.test = train, test
        self.autocast = tr["autocast"] == "bfloat16"
        models = [initial_model(run["model"], member_run(run, s)["training"], train.shape, n_classes, dtype)
                  for s in seeds]  # fmt: skip
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().to(device).requires_grad_(v.requires_grad) for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        # The scratch module: the architecture for functional_call, and member k's weights and
        # buffers (``load_member``) for evaluation and noise measurements.
        self.model = models[0].to(device)
        self.layer_names = list(weight_layers(self.model))
        self.timeline = t = TimeLine.of(run, train.n)
        self.svag = opt["svag"]
        self.schedule = run_schedule(run, t)
        self.augment = tr["crop_padding"] > 0 or tr["flip"]
        # one list per stream (SVAG has two), each with every member's stream of it
        self.streams = [list(group) for group in zip(*(data_streams(run, train, t, device, s) for s in seeds))]
        self.noise = [noise_meter(run, train, t, device, s) for s in seeds] if t.noise_steps else []
        self.trainable = [p for p in self.params.values() if p.requires_grad]
        lr0 = float(self.schedule.lr[0])
        self.optimizer = StackedAdam(self.trainable, opt, lr0) if is_adaptive(opt) else StackedSGD(
            self.trainable, opt["momentum"])  # fmt: skip
        if self.schedule.buffer_init is not None:
            self.optimizer.buffers = [self.schedule.buffer_init * p.detach().clone() for p in self.trainable]
        invariant = self.model.scale_invariant and not is_adaptive(opt)
        self.layers = [self.params[n] for n in self.layer_names]
        self.scale = MemberScales(self.layers, tr["rescale_log2"] if invariant else None)
        scratch_layers = weight_layers(self.model)
        self.recorders = [Recorder(run["evaluation"], opt["momentum"], scratch_layers, train, test) for _ in seeds]
        self.status = [run_outcome() for _ in seeds]
        self._vmapped = torch.vmap(self._member_output, randomness="error")
        self._vmapped_logits = torch.vmap(self._member_logits, randomness="error")
        self._vmapped_eval = torch.vmap(self._member_logits, in_dims=(0, 0, None), randomness="error")

    # --- the vectorized update ---------------------------------------------------------------

    def _member_output(self, params, buffers, *batches):
        """Under vmap: one member's logits (SGD) or SVAG loss."""

        forward = functools.partial(self._member_logits, params, buffers)
        if self.svag == 1:
            return forward(batches[0])
        return svag_loss(self.model, *batches, self.timeline.updates_per_step, forward=forward)

    def _member_logits(self, params, buffers, x):
        """Under vmap: one member's logits on ``x`` (its own batch, or images all share)."""
        return functional_call(self.model, (params, buffers), (x,))

    def _losses(self, batches: list[torch.Tensor]) -> torch.Tensor:
        """Each member's minibatch loss, (K,). SGD's cross-entropy is taken outside vmap, on
        all members' logits at once (under vmap it runs torch's Python decomposition, and its
        first call imports half a second of modules)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = self._vmapped(self.params, self.buffers, *batches)
            if self.svag > 1:
                return out
            y = batches[1]
            per_example = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none")
            return per_example.view(y.shape).mean(1)

    def _batches(self, streams: list[BatchStream]) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch of every member's stream, stacked: (K, B, ...) images, (K, B) labels."""
        if self.augment:  # each member's crop and flip from its own generator
            xs, ys = zip(*(s.next() for s in streams))
            return torch.stack(xs), torch.stack(ys)
        return self.train.batch(torch.stack([s.next_indices() for s in streams]), False, False, None)

    def flat_weights(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten(1) for p in self.layers], dim=1)

    def buffer_square(self) -> torch.Tensor | None:
        """Each member's |v|^2 over the weight layers at its true scale (None: no buffers)."""
        buffers = [self.optimizer.buffer_of(p) for p in self.layers]
        if any(b is None for b in buffers):
            return None
        scales = torch.tensor([4.0**-j for j in self.scale.log2], dtype=torch.float64, device=self.device)
        return sum(b.double().flatten(1).pow(2).sum(1) for b in buffers) * scales

    def start_updates(self) -> None:
        self.window = MemberWindow(self.device, self.flat_weights())

    def update(self, index: int, measure: bool = False):
        """``Trainer.update`` for every member at once: returns the (K,) losses, and with
        ``measure`` the stacked weights before the step and each member's gradient norm."""
        if index % 50 == 0:
            self.scale.rescale(self.optimizer)
        batches = [t for streams in self.streams for t in self._batches(streams)]
        self.optimizer.zero_grad()
        # member k's slice of the gradient is member k's own gradient
        losses = accumulated_backward(
            lambda part: self._losses([b[:, part] for b in batches]),
            batches[1].shape[1],
            self.run["training"]["micro_batch_size"],
        )
        lr, wd = float(self.schedule.lr[index]), float(self.schedule.wd[index])
        lrs = [lr * 4.0**-j for j in self.scale.log2]
        wds = [wd * 4.0**j for j in self.scale.log2]
        before, grad_norms = None, None
        if measure:
            before = {n: p.detach().clone() for n, p in zip(self.layer_names, self.layers)}
            scales = np.array([2.0**-j for j in self.scale.log2])
            grads = [p.grad for p in self.trainable if p.grad is not None]
            grad_norms = _member_norms(grads).cpu().numpy() * scales
        self.optimizer.step(lrs, wds)
        losses = losses.detach()
        self.window.add(index, losses, self.flat_weights(), self.buffer_square())
        return losses, before, grad_norms

    # --- per-member measurements -------------------------------------------------------------

    @torch.no_grad()
    def load_member(self, k: int) -> None:
        """Member k's weights and buffers into the scratch module."""
        for name, p in self.model.named_parameters():
            p.copy_(self.params[name][k])
        for name, b in self.model.named_buffers():
            b.copy_(self.buffers[name][k])

    def alive(self) -> list[int]:
        return [k for k, s in enumerate(self.status) if s["status"] == "completed"]

    def stop_diverged(self) -> bool:
        """Mark the members whose loss or weights have become non-finite (one device sync);
        True when none is left."""
        m = self.timeline.updates_per_step
        for k, bad in enumerate(self.window.first_bad.tolist()):
            if bad >= 0 and self.status[k]["status"] == "completed":
                self.status[k] = run_outcome(bad, m)
                log.warning("member seed %d: non-finite at update %d, marked diverged", self.seeds[k], bad)
        if self.alive():
            return False
        log.warning("every member diverged: training stops")
        return True

    @contextlib.contextmanager
    def _kept_buffers(self):
        """Train-mode passes outside training (noise measurements) update the members' BN
        running statistics in place: put them back afterwards."""
        saved = {k: b.clone() for k, b in self.buffers.items()}
        try:
            yield
        finally:
            with torch.no_grad():
                for k, b in saved.items():
                    self.buffers[k].copy_(b)

    @torch.no_grad()
    def _eval_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Every member's eval-mode logits on the same images, (K, n, classes), in passes of
        at most twice the training batch (the memory the chunk size was chosen for)."""
        size = max(1, min(self.run["evaluation"]["batch_size"], 2 * self.run["training"]["batch_size"]))
        was_training = self.model.training
        self.model.eval()
        try:
            return torch.cat([self._vmapped_eval(self.params, self.buffers, images[i : i + size])
                              for i in range(0, len(images), size)], dim=1)  # fmt: skip
        finally:
            self.model.train(was_training)

    def _member_outputs(self) -> list[dict]:
        """``Recorder.model_outputs`` of every member: one vectorized pass per split. BN
        recalibration resets and re-estimates running statistics, which vmap cannot (BN's
        cumulative average reads a per-member counter as a Python number): with it, each
        member is evaluated alone on the scratch module."""
        ev = self.run["evaluation"]
        if ev["bn_recalibration_samples"]:
            outputs = []
            for k in range(len(self.seeds)):
                self.load_member(k)
                outputs.append(self.recorders[k].model_outputs(self.model))
            return outputs
        K = len(self.seeds)
        columns: dict[str, np.ndarray] = {}
        test_logits = None
        for split, data, n in (("train", self.train, ev["train_samples"]), ("test", self.test, ev["test_samples"])):
            images, labels = data.unpadded(n)
            logits = self._eval_logits(images)
            loss = F.cross_entropy(logits.double().flatten(0, 1), labels.repeat(K), reduction="none")
            columns[f"{split}_loss"] = (loss.view(K, -1).sum(1) / len(labels)).cpu().numpy()
            columns[f"{split}_accuracy"] = ((logits.argmax(2) == labels).sum(1).double() / len(labels)).cpu().numpy()
            test_logits = logits
        for name, count in (("test_logits", ev["logit_samples"]), ("test_predictions", ev["prediction_samples"])):
            if not count:
                continue
            images, _ = self.test.unpadded(count)
            logits = test_logits[:, :count] if test_logits.shape[1] >= len(images) else self._eval_logits(images)
            columns[name] = logits.double().cpu().numpy() if name == "test_logits" else logits.argmax(2).cpu().numpy()
        return [{name: values[k] if values.ndim > 1 else float(values[k]) for name, values in columns.items()}
                for k in range(K)]  # fmt: skip

    def evaluate(self, step: int, before: dict | None = None, grad_norms=None) -> None:
        t = self.timeline
        update = min(step * t.updates_per_step, t.n_updates - 1)
        losses, angles, buffer_norms = self.window.close()
        lr, wd = float(self.schedule.lr[update]), float(self.schedule.wd[update])
        scales = 2.0 ** np.array(self.scale.log2, dtype=float)
        outputs = self._member_outputs()
        norms = torch.stack([torch.linalg.vector_norm(p.detach().double().flatten(1), dim=1) for p in self.layers])
        norms = norms.cpu().numpy() * scales  # (layer, member)
        layer_angles = None
        if before is not None:
            layer_angles = torch.stack([
                chord_angle(unit_direction(before[n].double().flatten(1), dim=1),
                            unit_direction(p.detach().double().flatten(1), dim=1), dim=1)
                for n, p in zip(self.layer_names, self.layers)
            ]).cpu().numpy()  # fmt: skip
        directions = None
        if self.run["evaluation"].get("direction_anchor") is not None:
            directions = unit_direction(torch.cat([p.detach().double().flatten(1) for p in self.layers], 1), dim=1)
        for k in self.alive():
            last = {
                "window_loss": float(losses[k]),
                "window_angle": float(angles[k]),
                "grad_norm": math.nan if grad_norms is None else float(grad_norms[k]),
                "buffer_norm": float(buffer_norms[k]),
            }
            self.recorders[k].add_row(
                step, step / t.steps_per_epoch, lr, wd, outputs[k], norms[:, k].tolist(),
                None if layer_angles is None else layer_angles[:, k].tolist(),
                None if directions is None else directions[k], last,
            )  # fmt: skip

    def _member_gradients(self, meters):
        """Each measurement minibatch's gradients of every member, (K, P): member k's batch
        from its own meter, one vectorized forward and backward in train mode."""
        for pairs in zip(*(meter.minibatches() for meter in meters)):
            x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
            logits = self._vmapped_logits(self.params, self.buffers, x)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
            grads = torch.autograd.grad(loss.sum(), self.trainable)
            yield torch.cat([g.flatten(1) for g in grads], dim=1)

    def measure_noise(self, step: int) -> None:
        """``Trainer.measure_noise`` for every member at once (``signal_and_noise`` per row)."""
        tic = time.perf_counter()
        was_training = self.model.training
        self.model.train()
        drawn = {"norm": 0.0, "n": 0}  # each member's mean |g| over the draws (per_example's SNR)

        def counted(gradients):
            for g in gradients:
                drawn["norm"], drawn["n"] = drawn["norm"] + g.double().norm(dim=-1), drawn["n"] + 1
                yield g

        with self._kept_buffers():
            signal, batch_noise = signal_and_noise(counted(self._member_gradients(self.noise)))
        self.model.train(was_training)
        seconds = time.perf_counter() - tic
        norms = _member_norms(self.layers).cpu().numpy() * 2.0 ** np.array(self.scale.log2, dtype=float)
        example_norms = (drawn["norm"] / drawn["n"]).cpu().numpy() if self.noise[0].per_example else None
        rows = {}
        for k in self.alive():
            rows[k] = self.noise[k].row(float(signal[k]), float(batch_noise[k]), 2.0 ** -self.scale.log2[k],
                                        float(norms[k]), seconds / len(self.seeds),
                                        math.nan if example_norms is None else float(example_norms[k]))  # fmt: skip
            self.recorders[k].add_noise(step, rows[k])
        if rows:
            noise = np.array([r["gradient_noise"] for r in rows.values()])
            log.info("step %s: gradient noise of %d members measured (%d batches each, %.1f s): tr Sigma_1 median %.4g",
                     step, len(rows), self.noise[0].batches, seconds, float(np.median(noise)))  # fmt: skip

    @property
    def noise_seconds(self) -> float:
        return sum(meter.seconds for meter in self.noise)

    # --- resume state --------------------------------------------------------------------------

    def state_dict(self, next_update: int, elapsed_s: float) -> dict:
        return {
            "next_update": next_update,
            "elapsed_s": elapsed_s,
            "params": {k: v.detach() for k, v in self.params.items()},
            "buffers": self.buffers,
            "optimizer": self.optimizer.state_dict(),
            "streams": [[s.state_dict() for s in streams] for streams in self.streams],
            "noise_generators": [meter.generator.get_state() for meter in self.noise],
            "noise_seconds": [meter.seconds for meter in self.noise],
            "members_status": self.status,
            "recorders": [r.state_dict() for r in self.recorders],
            **self.scale.state_dict(),
            **self.window.state_dict(),
        }

    def load_state_dict(self, state: dict) -> int:
        with torch.no_grad():
            for k, v in state["params"].items():
                self.params[k].copy_(v)
            for k, v in state["buffers"].items():
                self.buffers[k].copy_(v)
        self.optimizer.load_state_dict(state["optimizer"])
        for streams, saved in zip(self.streams, state["streams"]):
            for stream, s in zip(streams, saved):
                stream.load_state_dict(s)
        for meter, gen, seconds in zip(self.noise, state["noise_generators"], state["noise_seconds"]):
            meter.generator.set_state(gen.cpu())
            meter.seconds = seconds
        self.status = state["members_status"]
        for r, saved in zip(self.recorders, state["recorders"]):
            r.load_state_dict(saved)
        self.scale.load_state_dict(state)
        self.window = MemberWindow(self.device, self.flat_weights())
        self.window.load_state_dict(state)
        return state["next_update"]

    # --- the loop --------------------------------------------------------------------------------

    def progress_text(self, losses: torch.Tensor) -> str:
        alive = self.alive()
        return f"{len(alive)}/{len(self.seeds)} members alive, mean minibatch loss {float(losses[alive].mean()):.4f}"


def estimated_member_bytes(run: dict, model: torch.nn.Module, train) -> int:
    """Memory one member needs while training: weights, gradients and optimizer state
    (3x the parameters for Adam, 2x for SGD with momentum), plus the activations of a
    forward pass at the batch size (every module's output, kept for the backward, twice
    over for their gradients; SVAG's two batches double it)."""
    tr = run["training"]
    forwarded = min(tr["batch_size"], tr["micro_batch_size"] or tr["batch_size"])  # activations of one pass
    n_params = sum(p.numel() for p in model.parameters())
    states = 3 if is_adaptive(run["optimizer"]) else 2 if run["optimizer"]["momentum"] else 1
    outputs = []
    leaves = [mod for mod in model.modules() if not list(mod.children())]
    hooks = [mod.register_forward_hook(lambda _m, _i, out: outputs.append(out.numel())) for mod in leaves]
    try:
        with torch.no_grad(), kept_normalization_statistics(model):
            x, _ = train.unpadded(min(forwarded, train.n))
            model(x)
    finally:
        for h in hooks:
            h.remove()
    scale = forwarded / min(forwarded, train.n) * (2 if run["optimizer"]["svag"] > 1 else 1)
    bytes_per = torch.finfo(DTYPES[tr["dtype"]]).bits // 8
    return int((n_params * (1 + states) + 2 * sum(outputs) * scale) * bytes_per)


# The memory limit of the job's control group (SLURM confines a job's memory there), cgroup
# v2 and v1: (limit file, usage file).
CGROUP_MEMORY = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def free_memory_bytes(device) -> int:
    """Free memory for the job: CUDA's free memory on a GPU; on the CPU the host's available
    memory, or what is left of the job's cgroup limit (a SLURM allocation) when smaller."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        free = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    for limit_file, usage_file in CGROUP_MEMORY:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            free = min(free, max(0, limit - usage))
    return free


class EnsembleTrainer:
    """The trainer of a run with ``training.ensemble`` K > 1: its members, chunk by chunk."""

    def __init__(self, run: dict, threads: int | None = None, device: torch.device | None = None):
        self.run = run
        tr = run["training"]
        if threads:
            torch.set_num_threads(threads)
        self.device = device if device is not None else resolve_device(run["device"])
        set_float32_precision(tr["tf32"])
        dtype = DTYPES[tr["dtype"]]
        self.train, self.test, self.n_classes = device_splits(Path(run["dataset_dir"]), self.device, dtype,
                                                              tr["crop_padding"])  # fmt: skip
        self.seeds = member_seeds(run)
        self.set_chunk(tr["ensemble_chunk"] or self.automatic_chunk())
        self.timeline = TimeLine.of(run, self.train.n)

    def set_chunk(self, chunk: int) -> None:
        """Train ``chunk`` members at once: the consecutive chunks of the seeds."""
        self.chunk = chunk
        self.chunks = [self.seeds[i : i + chunk] for i in range(0, len(self.seeds), chunk)]

    def automatic_chunk(self) -> int:
        model = initial_model(self.run["model"], self.run["training"], self.train.shape, self.n_classes,
                              DTYPES[self.run["training"]["dtype"]]).to(self.device)  # fmt: skip
        per_member = estimated_member_bytes(self.run, model, self.train)
        fits = max(1, int(free_memory_bytes(self.device) // 2 // per_member))
        log.info("one member needs ~%.1f MB: %d members fit in half the free memory", per_member / 1e6, fits)
        return min(ensemble_size(self.run), fits)

    def describe(self) -> str:
        run, t = self.run, self.timeline
        return (
            f"ensemble {run['experiment']}/{run['run']}: {len(self.seeds)} members (seeds {self.seeds[0]}.."
            f"{self.seeds[-1]}) in {len(self.chunks)} chunk(s) of up to {self.chunk}, {run['optimizer']['name']}, "
            f"{run['model']['name']} on {run['dataset']}, {t.n_updates} updates ({t.n_steps} effective steps), "
            f"SVAG l={run['optimizer']['svag']}, {len(t.eval_steps)} evaluations, device {self.device}"
        )

    def fit(self, state: dict | None = None, checkpoint=None) -> dict:
        """Train every chunk; return the status of the file (``self.finished`` holds each
        chunk's records and member statuses)."""
        done = list(state["finished_chunks"]) if state else []
        wall = state["finished_wall_s"] if state else 0.0
        resumed = len(done)  # the chunk the state's chunk_state belongs to
        if state and state["chunk"] != self.chunk:  # (automatic: free memory differs from the last start)
            log.info("resuming with the chunks of %d members the run started with", state["chunk"])
            self.set_chunk(state["chunk"])
        for c in range(len(done), len(self.chunks)):
            log.info("chunk %d/%d: seeds %d..%d", c + 1, len(self.chunks), self.chunks[c][0], self.chunks[c][-1])
            members = Members(self.run, self.chunks[c], self.device, self.train, self.test, self.n_classes)
            saver = None if checkpoint is None else _ChunkCheckpoint(checkpoint, done, wall, self.chunk)
            chunk_state = state["chunk_state"] if state and c == resumed else None
            seconds = members.train_loop(chunk_state, saver)
            wall += seconds
            done.append({
                "records": [r.state_dict() for r in members.recorders],
                "status": members.status,
                "noise_seconds": members.noise_seconds,
                "layers": members.layer_names,
            })  # fmt: skip
        self.finished = done
        return self._status(wall)

    def _status(self, wall: float) -> dict:
        t = self.timeline
        noise = sum(c["noise_seconds"] for c in self.finished)
        train_time = wall - noise
        outcomes = [s for c in self.finished for s in c["status"]]
        updates = sum(t.n_updates if s["status"] == "completed" else s["diverged_update"] for s in outcomes)
        diverged = any(s["status"] == "diverged" for s in outcomes)
        return {
            "status": "diverged" if diverged else "completed",  # per member: member_status
            "steps_per_second": updates / len(self.seeds) / train_time if train_time > 0 else math.nan,
            "member_updates_per_second": updates / train_time if train_time > 0 else math.nan,
            "wall_time_s": wall,
            "noise_measurement_time_s": noise,
            "device": describe_device(self.device),
            "total_steps": t.n_steps,
            "total_updates": t.n_updates,
            "channels_last": 0,
            "steps_per_epoch": t.steps_per_epoch,
            "torch_version": torch.__version__,
            "ensemble_chunk": self.chunk,
        }

    def dataset(self, status: dict):
        """The ensemble's run file (``engine.combine.ensemble_dataset``)."""
        members = []
        for chunk, seeds in zip(self.finished, self.chunks):
            for seed, records, outcome in zip(seeds, chunk["records"], chunk["status"]):
                members.append(
                    run_dataset(
                        records["records"],
                        chunk["layers"],
                        member_run(self.run, seed),
                        {**status, **outcome},
                        records["noise_records"],
                    )  # fmt: skip
                )
        return ensemble_dataset(members, self.run, status)


class _ChunkCheckpoint:
    """The job's checkpointing for one chunk: its state saved with the chunk size and the
    finished chunks' records (``finished``: the trainer's own list, which grows as chunks end)."""

    def __init__(self, checkpoint, finished: list, finished_wall: float, chunk: int):
        self.checkpoint, self.finished, self.finished_wall, self.chunk = checkpoint, finished, finished_wall, chunk

    def due(self, done: int) -> bool:
        return self.checkpoint.due(done)

    def save(self, state: dict) -> None:
        self.checkpoint.save({
            "next_update": state["next_update"],
            "elapsed_s": self.finished_wall + state["elapsed_s"],
            "finished_chunks": self.finished,
            "finished_wall_s": self.finished_wall,
            "chunk": self.chunk,
            "chunk_state": state,
        })  # fmt: skip
