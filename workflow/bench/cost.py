"""What each experiment of a config costs, before it is submitted: runs, updates, images,
FLOPs and estimated GPU-hours, one row per experiment (``config/paper.yaml`` by default).

Counted per run (every member of a ``training.ensemble`` counts as a run):

- updates: the engine's own ``TimeLine.of(run, n_train)`` (``engine.trainer``): epochs x
  steps per epoch, times l (SGD's SVAG) or l^2 (adaptive SVAG) updates per effective step;
  n_train is the dataset's training-set size (``engine.facts.DATASET_SOURCES``, or the
  dataset's ``train_subset``);
- images trained: updates x B, x2 under SVAG (each SVAG update forwards two batches);
- evaluation images (forward only): at each evaluation step the train and test subsets
  (``train_samples``, ``test_samples``; null: the whole split), the BN recalibration
  images, the stored logits and predictions (each a forward pass of its own);
- gradient-noise images (forward + backward): per measurement ``noise_batches(B,
  batches)`` minibatches of B;
- full-batch GD (``gd_experiments``): ``steps`` forwards + backwards over ``examples``
  (and the last step's forward), plus the sharpness measurements (at step 0, every
  ``sharpness_every`` steps and at the end), each one gradient with its graph (~3
  forwards) and K Hessian-vector products of ~2 gradients each (~6 forwards). K follows
  ``engine.hessian.sharpness``: a Krylov space of ncv = max(2k+1, 8), after which a
  warm-started ARPACK stops (code comment: "~ncv products"), so ncv products per warm
  measurement and ``COLD_PRODUCTS`` (ARPACK's default space of 20) for the cold first one.

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on the engine's own builder
(``engine.models.build_model`` / ``fc_net``) for one forward pass at the dataset's input
shape; it counts matrix products and convolutions (2 FLOPs per multiply-add), not
normalization, activations or the optimizer. A training image costs 3 forwards (forward +
backward, the usual convention); the measured ratio for PreResNet32 is printed beside it.

Throughput: a training step of PreResNet32 (width 1, B = 128, float32, the engine's model and
memory layout, SGD with momentum) timed on this CPU, its FLOPs counted by FlopCounterMode,
against this CPU's peak from /proc/cpuinfo (cores x clock x FP32 FLOPs per cycle from the
SIMD flags: an assumption, stated in the output). GPU-hours are ESTIMATES, not measurements:
total FLOPs / (peak x utilization), NVIDIA H100 SXM / H200 datasheet dense peaks.

    PYTHONPATH=workflow .venv/bin/python workflow/bench/cost.py [--config config/paper.yaml]
        [--markdown out.md] [--threads N] [--steps 5] [--no-measure]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarking import ForeignLoad  # noqa: E402

from lrdynamics.config import figure_experiments, load_config  # noqa: E402
from lrdynamics.engine.adaptive import updates_per_step  # noqa: E402
from lrdynamics.engine.devices import use_channels_last  # noqa: E402
from lrdynamics.engine.facts import DATASET_SOURCES  # noqa: E402
from lrdynamics.engine.gradient_noise import noise_batches  # noqa: E402

try:  # the per-example estimator's default sample count, where the engine has it
    from lrdynamics.engine.gradient_noise import EXAMPLE_SAMPLES  # noqa: E402
except ImportError:
    EXAMPLE_SAMPLES = 1000
from lrdynamics.engine.models import fc_net  # noqa: E402
from lrdynamics.engine.trainer import TimeLine, initial_model  # noqa: E402

TRAIN_FORWARDS = 3  # a training image: forward + backward ~ 3 forwards
HVP_FORWARDS = 6  # a Hessian-vector product ~ 2 gradients ~ 6 forwards
COLD_PRODUCTS = 20  # products of the cold-started first sharpness measurement (ARPACK's ncv)
# NVIDIA datasheets (H100 SXM5 and H200 SXM: the same compute dies), dense FLOP/s:
# FP32 (CUDA cores) 67 TFLOP/s; TF32 Tensor Core 989 TFLOP/s "with sparsity", i.e. 494.5 dense.
GPU_NAME = "H100 SXM / H200"
GPU_PEAK = {"fp32": 67e12, "tf32": 494.5e12}
UTILIZATION = 0.30  # assumed fraction of peak reached by small-batch CIFAR nets (see --help text)
BENCH_BATCH = 128


# ----------------------------------------------------------------------------- FLOPs
def counted_flops(fn) -> int:
    """FLOPs that FlopCounterMode counts while ``fn()`` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def input_shape(run: dict) -> tuple[int, int, int]:
    """(C, H, W) of a run's images: the dataset source's, at ``resize`` pixels if set."""
    spec = run["dataset_spec"]
    src = DATASET_SOURCES[spec["source"]]
    side = spec.get("resize") or src.side
    return (src.channels, side, side)


def split_sizes(run: dict) -> tuple[int, int]:
    """(n_train, n_test): the dataset's split sizes, its subsets where set."""
    spec = run["dataset_spec"]
    src = DATASET_SOURCES[spec["source"]]
    return spec.get("train_subset") or src.n_train, spec.get("test_subset") or src.n_test


_FORWARD_CACHE: dict[str, tuple[float | None, str]] = {}


def forward_flops(model: torch.nn.Module, in_shape, batch: int = 2) -> float:
    """Forward FLOPs per image of ``model`` (eval mode, a batch of ``batch`` random images)."""
    model.eval()
    x = torch.randn(batch, *in_shape)
    with torch.no_grad():
        return counted_flops(lambda: model(x)) / batch


def model_forward_flops(run: dict) -> tuple[float | None, str]:
    """(forward FLOPs per image, note) of a resolved run's net (SGD or GD run), built by the
    engine; (None, why) when it cannot be built (a model name this engine does not know)."""
    gd = run.get("kind") == "full_batch_gd"
    shape = input_shape(run)
    n_classes = DATASET_SOURCES[run["dataset_spec"]["source"]].classes
    key = json.dumps([gd, run["model"], shape, n_classes], sort_keys=True, default=str)
    if key not in _FORWARD_CACHE:
        try:
            if gd:
                m = run["model"]
                net = fc_net(math.prod(shape), n_classes, m["width"], m["depth"], m["activation"], m["norm"], m["bias"])
                _FORWARD_CACHE[key] = (forward_flops(net, (math.prod(shape),)), "")
            else:
                training = {"seed": 0, "init_scale": 1.0, "perturb_init": False}
                net = initial_model(run["model"], training, shape, n_classes, torch.float32)
                _FORWARD_CACHE[key] = (forward_flops(net, shape), "")
        except Exception as err:  # noqa: BLE001 (a net we cannot build is skipped with a note)
            _FORWARD_CACHE[key] = (None, f"{model_label(run)} not built ({type(err).__name__}: {err})"[:200])
    return _FORWARD_CACHE[key]


def model_label(run: dict) -> str:
    m = run["model"]
    if run.get("kind") == "full_batch_gd":
        return f"fc-{m['activation']} {m['depth']}x{m['width']}" + ("" if m["norm"] == "none" else f" {m['norm']}")
    size = f" x{m['width_multiplier']:g}" if m.get("width_multiplier", 1) != 1 else ""
    if m.get("name") in ("mlp", "cnn4") and m.get("width"):
        size = f" w{m['width']}"
    return f"{m.get('name')} {m.get('norm', '')}{size}".strip()


def model_labels(runs: list[dict]) -> list[str]:
    """The distinct nets of an experiment's runs; GD fc nets folded into one label per
    depth x width ("fc-relu/tanh 2x200", "+bn" when some runs normalize)."""
    labels, fc = set(), {}
    for run in runs:
        if run.get("kind") == "full_batch_gd":
            m = run["model"]
            acts, norms = fc.setdefault((m["depth"], m["width"]), (set(), set()))
            acts.add(m["activation"])
            norms.add(m["norm"])
        else:
            labels.add(model_label(run))
    for (depth, width), (acts, norms) in sorted(fc.items()):
        norm = "" if norms == {"none"} else " " + "/".join(sorted(norms))
        labels.add(f"fc-{'/'.join(sorted(acts))} {depth}x{width}{norm}")
    return sorted(labels)


# ----------------------------------------------------------------------------- counts
@dataclass
class RunCost:
    """The counts of one resolved run (one member of an ensemble: ``members`` of them)."""

    members: int
    updates: int
    train_images: int  # images forwarded and backpropagated by the updates (per member)
    eval_images: int  # forward-only images of the evaluations (per member)
    noise_images: int  # forward + backward images of the noise measurements / sharpness (per member)
    hvp_images: int = 0  # images through a Hessian-vector product (GD sharpness)
    forward_flops: float | None = None
    note: str = ""

    @property
    def flops(self) -> float | None:
        """Total FLOPs of all members."""
        if self.forward_flops is None:
            return None
        fwd = TRAIN_FORWARDS * (self.train_images + self.noise_images) + self.eval_images
        return self.members * self.forward_flops * (fwd + HVP_FORWARDS * self.hvp_images)

    @property
    def train_flops(self) -> float | None:
        return None if self.forward_flops is None else self.members * self.forward_flops * 3 * self.train_images


def evaluation_images(run: dict, n_train: int, n_test: int) -> int:
    """Forward-only images of one evaluation (``engine.recording.Recorder.model_outputs``)."""
    ev = run["evaluation"]

    def take(n, limit):
        return limit if n is None else min(n, limit)

    total = take(ev["train_samples"], n_train) + take(ev["test_samples"], n_test)
    for key, limit in (("bn_recalibration_samples", n_train), ("logit_samples", n_test),
                       ("prediction_samples", n_test)):  # fmt: skip
        if ev.get(key):
            total += take(ev[key], limit)
    return total


def noise_images(gn: dict, B: int) -> int:
    """Images (forward + backward) of one gradient-noise measurement
    (``engine.gradient_noise.NoiseMeter``): ``batches`` minibatches of B, or with
    ``estimator: per_example`` its ``samples`` single examples."""
    if gn.get("estimator", "minibatch") == "per_example":
        return gn.get("samples") or EXAMPLE_SAMPLES
    return noise_batches(B, gn.get("batches")) * B


def sgd_run_cost(run: dict) -> RunCost:
    """Counts of a minibatch run (``engine.trainer.Trainer``), from the engine's timeline."""
    n_train, n_test = split_sizes(run)
    t = TimeLine.of(run, n_train)
    assert t.updates_per_step == updates_per_step(run["optimizer"])
    B = run["training"]["batch_size"]
    per_update = min(B, n_train) * (2 if run["optimizer"]["svag"] > 1 else 1)
    noise = len(t.noise_steps) * noise_images(run["gradient_noise"], min(B, n_train))
    fwd, note = model_forward_flops(run)
    return RunCost(
        members=run["training"].get("ensemble") or 1,
        updates=t.n_updates,
        train_images=t.n_updates * per_update,
        eval_images=len(t.eval_steps) * evaluation_images(run, n_train, n_test),
        noise_images=noise,
        forward_flops=fwd,
        note=note,
    )


def sharpness_steps(steps: int, every: int) -> int:
    """Number of sharpness measurements of a GD run (``GradientDescent.fit``)."""
    return len({0, steps} | set(range(every, steps + 1, every)))


def gd_run_cost(run: dict) -> RunCost:
    """Counts of a full-batch GD run (``engine.gd.GradientDescent``)."""
    n, steps = run["examples"], run["steps"]
    k = run["sharpness_eigenvalues"]
    ncv = max(2 * k + 1, 8)  # engine.hessian.sharpness's Krylov space
    measurements = sharpness_steps(steps, run["sharpness_every"])
    products = COLD_PRODUCTS + ncv * (measurements - 1)
    fwd, note = model_forward_flops(run)
    if run.get("stop_train_accuracy") is not None:
        note = "; ".join(filter(None, [note, "GD stops at a train-accuracy goal: an upper bound"]))
    return RunCost(
        members=1,
        updates=steps,
        train_images=steps * n,
        eval_images=n,  # the last step's forward, without a backward
        noise_images=measurements * n,  # each measurement's gradient with its graph (~ a training image)
        hvp_images=products * n,
        forward_flops=fwd,
        note=note,
    )


def run_cost(run: dict) -> RunCost:
    return gd_run_cost(run) if run.get("kind") == "full_batch_gd" else sgd_run_cost(run)


@dataclass
class ExperimentCost:
    name: str
    figures: list[str]
    models: list[str]
    runs: int
    members: list[int]
    nets: int  # runs x members: the nets trained
    updates: list[int]
    images: int
    flops: float | None
    train_flops: float | None
    notes: list[str] = field(default_factory=list)

    def gpu_hours(self, precision: str, utilization: float = UTILIZATION) -> float | None:
        return None if self.flops is None else self.flops / (GPU_PEAK[precision] * utilization) / 3600


def figures_by_experiment(config: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for fig, entry in config.get("figures", {}).items():
        for exp in figure_experiments(entry):
            out.setdefault(exp, []).append(fig)
    return out


def experiment_costs(config: dict) -> list[ExperimentCost]:
    """One ExperimentCost per experiment of a resolved config, in config order."""
    figs = figures_by_experiment(config)
    out = []
    for name, runs in config["runs"].items():
        costs = [run_cost(run) for run in runs.values()]
        known = [c for c in costs if c.flops is not None]
        notes = sorted({c.note for c in costs if c.note})
        if known and len(known) < len(costs):
            notes.append(f"{len(costs) - len(known)} of {len(costs)} runs left out of the FLOPs")
        out.append(
            ExperimentCost(
                name=name,
                figures=figs.get(name, []),
                models=model_labels(list(runs.values())),
                runs=len(costs),
                members=sorted({c.members for c in costs}),
                nets=sum(c.members for c in costs),
                updates=[c.updates for c in costs],
                images=sum(c.members * c.train_images for c in costs),
                flops=sum(c.flops for c in known) if known else None,
                train_flops=sum(c.train_flops for c in known) if known else None,
                notes=notes,
            )
        )
    return out


# ----------------------------------------------------------------------------- throughput
def cpu_peak(threads: int) -> tuple[float | None, str]:
    """(FP32 peak FLOP/s of ``threads`` cores, how it was found) from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, "no /proc/cpuinfo: peak unknown"
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    flags = next((line.split(":")[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    model = next((line.split(":")[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    if not mhz:
        return None, f"{model}: no clock in /proc/cpuinfo: peak unknown"
    if "avx512f" in flags:
        per_cycle, why = 64, "AVX-512 with 2 FMA units: 2 x 16 lanes x 2"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, why = 32, "AVX2 with 2 FMA units: 2 x 8 lanes x 2"
    elif "avx" in flags:
        per_cycle, why = 16, "AVX, separate add and multiply: 2 x 8 lanes"
    else:
        per_cycle, why = 8, "SSE: 2 x 4 lanes"
    clock = max(mhz) * 1e6
    peak = threads * clock * per_cycle
    return peak, (f"{model}, {threads} core(s) x {clock / 1e9:.2f} GHz (cpuinfo, no boost assumed) x "
                  f"{per_cycle} FP32 FLOPs/cycle ({why}; assumed from the flags)")  # fmt: skip


def measure_cpu(config: dict, threads: int, steps: int) -> dict:
    """A PreResNet32 (width 1) training step at B = 128 in float32 on this CPU: seconds,
    counted FLOPs, FLOP/s and fraction of peak."""
    torch.set_num_threads(threads)
    spec = {"name": "preresnet32", "norm": "bn", "groups": 8, "width": None, "depth": 3, "width_multiplier": 1,
            "norm_eps": 1e-30, "freeze_last_layer": True}  # fmt: skip
    base = next((r for runs in config["runs"].values() for r in runs.values()
                 if r.get("model", {}).get("name") == "preresnet32"), None)  # fmt: skip
    if base is not None:
        spec = {**base["model"], "width_multiplier": 1}
    torch.manual_seed(0)
    model = initial_model(spec, {"seed": 0, "init_scale": 1.0, "perturb_init": False}, (3, 32, 32), 10,
                          torch.float32)  # fmt: skip
    forward = forward_flops(model, (3, 32, 32))
    cpu = torch.device("cpu")
    layout = torch.channels_last if use_channels_last("auto", cpu, model) else torch.contiguous_format
    model = model.to(memory_format=layout).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(BENCH_BATCH, 3, 32, 32).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (BENCH_BATCH,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step_flops = counted_flops(step)  # also the warm-up step
    seconds = []
    with ForeignLoad() as fl:
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - t0)
    sec = min(seconds)  # the best step: the achievable rate, least disturbed by other processes
    peak, peak_note = cpu_peak(threads)
    achieved = step_flops / sec
    return {
        "threads": threads,
        "channels_last": layout == torch.channels_last,
        "step_seconds": sec,
        "seconds": seconds,
        "step_seconds_median": statistics.median(seconds),
        "step_seconds_range": (min(seconds), max(seconds)),
        "images_per_second": BENCH_BATCH / sec,
        "forward_flops_per_image": forward,
        "step_flops": step_flops,
        "train_to_forward_ratio": step_flops / (BENCH_BATCH * forward),
        "achieved_flops": achieved,
        "peak_flops": peak,
        "peak_note": peak_note,
        "utilization": None if peak is None else achieved / peak,
        "other_processes_cores": fl.cores,
    }


# ----------------------------------------------------------------------------- output
def _count(v: float) -> str:
    """1234567 -> '1.23M' (k, M, G, T)."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def _range(values: list[float], fmt=_count) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}"


def _hours(h: float) -> str:
    return f"{h:.2g}" if h < 10 else f"{h:,.0f}"


def table(costs: list[ExperimentCost]) -> str:
    head = ("experiment", "figure(s)", "model", "runs x members", "updates / run", "images trained", "PFLOP",
            "train share", "GPU-h (estimate)")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in costs:
        members = "/".join(str(m) for m in c.members)
        if c.flops is None:
            pflop, share, hours = "n/a", "n/a", "n/a (" + "; ".join(c.notes) + ")"
        else:
            pflop = f"{c.flops / 1e15:,.1f}" if c.flops >= 1e14 else f"{c.flops / 1e15:.2g}"
            share = f"{c.train_flops / c.flops:.0%}"
            hours = f"{_hours(c.gpu_hours('tf32'))}-{_hours(c.gpu_hours('fp32'))}"
            if c.notes:
                hours += " (" + "; ".join(c.notes) + ")"
        lines.append(f"| {c.name} | {', '.join(c.figures) or '-'} | {', '.join(c.models)} | {c.runs} x {members} "
                     f"| {_range(c.updates)} | {_count(c.images)} | {pflop} | {share} | {hours} |")  # fmt: skip
    known = [c for c in costs if c.flops is not None]
    flops = sum(c.flops for c in known)
    train = sum(c.train_flops for c in known)
    trained = sum(c.images for c in costs)
    runs = sum(c.runs for c in costs)
    lo = sum(c.gpu_hours("tf32") for c in known)
    hi = sum(c.gpu_hours("fp32") for c in known)
    left = f" ({len(costs) - len(known)} experiment(s) without FLOPs left out)" if len(known) < len(costs) else ""
    nets = sum(c.nets for c in costs)
    lines.append(f"| **total** | | | {runs} runs ({nets:,} nets) | | {_count(trained)} | **{flops / 1e15:,.0f}** | "
                 f"{train / flops:.0%} | **{_hours(lo)}-{_hours(hi)}**{left} |")  # fmt: skip
    return "\n".join(lines)


def assumptions(cpu: dict | None, config_path: str, costs: list[ExperimentCost]) -> str:
    fp32, tf32 = (GPU_PEAK[k] * UTILIZATION / 1e12 for k in ("fp32", "tf32"))
    known = [c for c in costs if c.flops is not None]
    total = sum(c.flops for c in known)
    parts = [
        f"Cost of `{config_path}`: every experiment's resolved runs (ensemble members count as runs). "
        "Updates per run: the engine's `TimeLine.of(run, n_train)` (epochs x steps per epoch, x l under SGD's "
        "SVAG, x l^2 under adaptive SVAG; n_train 50,000 CIFAR-10, 60,000 MNIST, or the `train_subset`). Images "
        "trained: updates x B, x2 under SVAG (two batches per update). FLOPs: `FlopCounterMode` on the engine's "
        "own net, one forward at the dataset's input shape (matmuls and convolutions only, 2 FLOPs per "
        "multiply-add; normalization, activations and the optimizer not counted); a training image = 3 forwards; "
        "evaluations = one forward per image (train/test subsets, BN recalibration, stored logits/predictions); "
        "gradient-noise measurements = batches x B images at 3 forwards; full-batch GD = steps x examples x 3 "
        f"forwards plus sharpness: per measurement one gradient with its graph (3 forwards) and Hessian-vector "
        f"products at {HVP_FORWARDS} forwards each, ncv = max(2k+1, 8) products per warm-started measurement "
        f'(engine/hessian.py) and {COLD_PRODUCTS} for the cold first one. "train share" is the fraction of the '
        "FLOPs spent on the updates themselves (the rest: evaluation, noise, sharpness).",
    ]
    if cpu is not None:
        util = "" if cpu["utilization"] is None else f", {cpu['utilization']:.0%} of this CPU's FP32 peak"
        peak = "" if cpu["peak_flops"] is None else f" (peak {cpu['peak_flops'] / 1e9:.0f} GFLOP/s: {cpu['peak_note']})"
        load = cpu["other_processes_cores"]
        busy = (f"; WARNING: other processes used {load:.1f} of the cores meanwhile, so this is a lower bound"
                if load is not None and load > 0.25 else "")  # fmt: skip
        parts.append(
            f"Measured here: one PreResNet32 training step (width 1, B = {BENCH_BATCH}, float32, "
            f"{'channels-last' if cpu['channels_last'] else 'contiguous'}, SGD with momentum, {cpu['threads']} "
            f"thread(s)) takes {cpu['step_seconds']:.2f} s, the best of {len(cpu['seconds'])} (median "
            f"{cpu['step_seconds_median']:.2f} s; {cpu['images_per_second']:.0f} img/s), "
            f"{cpu['step_flops'] / 1e9:.1f} GFLOP counted (= {cpu['train_to_forward_ratio']:.2f} x the forward of "
            f"{cpu['forward_flops_per_image'] / 1e6:.1f} MFLOP/image, against the 3x convention): "
            f"**{cpu['achieved_flops'] / 1e9:.1f} GFLOP/s**{util}{peak}{busy}. At that rate the total "
            f"({total / 1e15:,.0f} PFLOP) would take {total / cpu['achieved_flops'] / 3600 / 24 / 365:,.0f} "
            "CPU-years: this is a GPU job."
        )
    parts.append(
        f"GPU-hours are **estimates, not measurements** (no GPU here): total FLOPs / (peak x {UTILIZATION:.0%}), "
        f"NVIDIA {GPU_NAME} datasheet dense peaks. Low end: {UTILIZATION:.0%} of the TF32 Tensor Core peak "
        f"(494.5 TFLOP/s dense; the datasheet's 989 is with sparsity) = {tf32:.0f} TFLOP/s, reachable only with "
        f"`training.tf32: true`; high end: {UTILIZATION:.0%} of the FP32 CUDA-core peak (67 TFLOP/s) = {fp32:.1f} "
        "TFLOP/s, the config's default (`tf32: false`). 30% is a typical achieved fraction for CIFAR ResNets at "
        "B = 64-256 in eager PyTorch (16-64-channel 32x32 convolutions are partly memory- and launch-bound); "
        "small-B runs (B = 16, 32), the MNIST cnn4 ensembles and the tiny fc nets of full-batch GD (whose "
        "sharpness loop runs ARPACK on the host) will reach less, so read their hours as lower bounds. Data "
        "loading, checkpointing and job start-up are not included."
    )
    return "\n\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/paper.yaml")
    ap.add_argument("--markdown", help="also write the paragraph and table to this file")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the CPU timing")
    ap.add_argument("--steps", type=int, default=5, help="timed PreResNet32 steps (after one warm-up)")
    ap.add_argument("--no-measure", action="store_true", help="skip the CPU timing")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    path = Path(args.config)
    if not path.is_absolute() and not path.exists():
        path = REPO / path
    config = load_config(yaml.safe_load(path.read_text()))
    costs = experiment_costs(config)
    cpu = None if args.no_measure else measure_cpu(config, args.threads, args.steps)
    text = f"## Cost of `{args.config}`\n\n{assumptions(cpu, args.config, costs)}\n\n{table(costs)}\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
        print(f"wrote {args.markdown}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
