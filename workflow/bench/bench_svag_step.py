"""Benchmark: wall time of one SVAG update against one plain SGD update, per model.

Standalone (writes nothing). For each model (built with ``lrdynamics.engine.models.build_model``:
BatchNorm without affine parameters, eps 1e-30, frozen classifier), random inputs on the
device (mlp, cnn4: 1x28x28; preresnet32, vgg16: 3x32x32; 10 classes), batch size B = 128,
SVAG parameter l = 4, the time per optimizer update of

  plain  forward on one batch of B, F.cross_entropy, zero_grad, backward, SGD step
         (torch.optim.SGD, lr 0.1, weight decay 5e-4, no momentum);
  svag   the package's step: ``lrdynamics.engine.optimizers.svag_loss`` (one forward over the two
         batches concatenated, 2B examples, batch norm per batch via ``per_batch_norm``),
         zero_grad, backward, SGD step (lr 0.1/l, as training uses);
  naive  zero_grad, c1*L(b1) forward + backward, c2*L(b2) forward + backward (the
         gradients accumulate), SGD step; (c1, c2) from ``svag_coefficients(l)``.

Each variant trains its own copy of the same initial model. Before timing, a check per
model: from identical weights (deepcopy) and the same two batches, svag and naive must give
the same gradient (torch.allclose, rtol 1e-4, atol 1e-6, float32) and the same BatchNorm
running statistics; the max abs differences are printed. One 2B pass and two B passes sum
in different orders, so in float32 a large-fan-in gradient (e.g. vgg16's first conv, summed
over B*32*32 positions) can miss that elementwise tolerance by rounding alone; the check is
then repeated in float64, where an exact implementation agrees to ~1e-14 relative ("ok64"
in the table; "FAIL" if float64 disagrees too). Then a few warm-up rounds, then
--steps rounds, each timing one update of plain, svag, naive in turn (interleaved, so
drift hits all three alike); reported is the median time per update and the ratios
svag/plain and naive/plain. Processing 2B examples instead of B, an ideal SVAG step costs
2x a plain one; the target is svag/plain <= 2. On CUDA each update is timed with
torch.cuda.Event pairs (synchronized once per round); on CPU with time.perf_counter. The
"others" column is the CPU (in cores) other processes used during that model's timing:
the timings mean little unless it is ~0.

    .venv/bin/python workflow/bench/bench_svag_step.py [--device auto|cpu|cuda]
        [--models mlp,cnn4,preresnet32,vgg16] [--steps 30] [--warmup 3] [--threads 1]
        [--width-multiplier W]

--width-multiplier applies to preresnet32 and vgg16; by default 1 on CUDA and, to keep the
default CPU run near 2 minutes (2 cores, --threads 1), 0.25 (preresnet32) and 0.125 (vgg16)
on CPU.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarking.py
from benchmarking import ForeignLoad  # noqa: E402

from lrdynamics.engine.facts import MODEL_NAMES  # noqa: E402
from lrdynamics.engine.models import build_model  # noqa: E402
from lrdynamics.engine.optimizers import svag_coefficients, svag_loss  # noqa: E402

BATCH, N_CLASSES, L, LR, WD = 128, 10, 4, 0.1, 5e-4
IN_SHAPES = {"mlp": (1, 28, 28), "cnn4": (1, 28, 28), "preresnet32": (3, 32, 32), "vgg16": (3, 32, 32)}
WIDTHS = {"mlp": 256, "cnn4": 32}
CPU_WIDTH_MULTIPLIERS = {"preresnet32": 0.25, "vgg16": 0.125}
N_BATCHES = 4  # pre-generated batches per stream, cycled (data cost kept out of the timing)
RTOL, ATOL = 1e-4, 1e-6


def model_spec(name: str, width_multiplier: float) -> dict:
    return {
        "name": name,
        "norm": "bn",
        "groups": 8,
        "norm_eps": 1e-30,
        "freeze_last_layer": True,
        "width": WIDTHS.get(name),
        "depth": 3,
        "width_multiplier": width_multiplier,
    }


def make_batches(name: str, device, seed: int = 1234):
    """Two streams of N_BATCHES random (x, y) batches of size BATCH."""
    g = torch.Generator().manual_seed(seed)
    streams = []
    for _ in range(2):
        xs = torch.randn(N_BATCHES, BATCH, *IN_SHAPES[name], generator=g)
        ys = torch.randint(0, N_CLASSES, (N_BATCHES, BATCH), generator=g)
        streams.append([(xs[i].to(device), ys[i].to(device)) for i in range(N_BATCHES)])
    return streams


def sgd(model, lr):
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.0, weight_decay=WD)


# ---------------------------------------------------------------- the three updates
def plain_step(model, opt, x1, y1, x2, y2):
    loss = F.cross_entropy(model(x1), y1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def svag_step(model, opt, x1, y1, x2, y2):
    loss = svag_loss(model, x1, y1, x2, y2, L)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def naive_backward(model, x1, y1, x2, y2):
    c1, c2 = svag_coefficients(L)
    (c1 * F.cross_entropy(model(x1), y1)).backward()
    (c2 * F.cross_entropy(model(x2), y2)).backward()


def naive_step(model, opt, x1, y1, x2, y2):
    opt.zero_grad(set_to_none=True)
    naive_backward(model, x1, y1, x2, y2)
    opt.step()


VARIANTS = {"plain": (plain_step, LR), "svag": (svag_step, LR / L), "naive": (naive_step, LR / L)}


# ---------------------------------------------------------------- check and timing
def check(model, streams, dtype=torch.float32) -> dict:
    """svag vs naive gradient (and running statistics) from identical weights and batches.

    Returns passed (torch.allclose, RTOL/ATOL, on every gradient and running statistic),
    the max |grad diff|, max |grad|, the relative error of the whole gradient vector
    (norm of the difference / norm) and the max |running-stat diff|.
    """
    (x1, y1), (x2, y2) = streams[0][0], streams[1][0]
    x1, x2 = x1.to(dtype), x2.to(dtype)
    m_svag, m_naive = copy.deepcopy(model).to(dtype).train(), copy.deepcopy(model).to(dtype).train()
    svag_loss(m_svag, x1, y1, x2, y2, L).backward()
    naive_backward(m_naive, x1, y1, x2, y2)
    r = {"passed": True, "grad_diff": 0.0, "grad_max": 0.0, "buf_diff": 0.0}
    diff_sq = norm_sq = 0.0
    for (n, p), q in zip(m_svag.named_parameters(), m_naive.parameters()):
        if not p.requires_grad:
            continue
        if p.grad is None or q.grad is None:
            raise RuntimeError(f"no gradient for {n}")
        r["grad_diff"] = max(r["grad_diff"], float((p.grad - q.grad).abs().max()))
        r["grad_max"] = max(r["grad_max"], float(q.grad.abs().max()))
        diff_sq += float((p.grad - q.grad).double().square().sum())
        norm_sq += float(q.grad.double().square().sum())
        r["passed"] &= torch.allclose(p.grad, q.grad, rtol=RTOL, atol=ATOL)
    r["grad_rel"] = (diff_sq / norm_sq) ** 0.5
    for b, c in zip(m_svag.buffers(), m_naive.buffers()):
        if b.is_floating_point():
            r["buf_diff"] = max(r["buf_diff"], float((b - c).abs().max()))
            r["passed"] &= torch.allclose(b, c, rtol=RTOL, atol=ATOL)
    return r


def check_line(label: str, dtype, r: dict) -> str:
    return (
        f"check {label} ({str(dtype).replace('torch.', '')}): svag vs naive gradient max|diff| {r['grad_diff']:.2e} "
        f"(max|grad| {r['grad_max']:.2e}, |diff|/|grad| {r['grad_rel']:.1e}), running stats max|diff| "
        f"{r['buf_diff']:.2e} -> {'PASS' if r['passed'] else 'FAIL'} (allclose rtol {RTOL:g}, atol {ATOL:g})"
    )


def bench(model, streams, device, steps: int, warmup: int) -> dict[str, float]:
    """Median ms per update of each variant, the variants interleaved round by round."""
    runs = {}
    for name, (step, lr) in VARIANTS.items():
        m = copy.deepcopy(model).train()
        runs[name] = (step, m, sgd(m, lr))
    cuda = device.type == "cuda"
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(warmup + steps):
        batch = (*streams[0][r % N_BATCHES], *streams[1][r % N_BATCHES])
        events = {}
        for name, (step, m, opt) in runs.items():
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                step(m, opt, *batch)
                end.record()
                events[name] = (start, end)
            else:
                t0 = time.perf_counter()
                step(m, opt, *batch)
                if r >= warmup:
                    times[name].append(1e3 * (time.perf_counter() - t0))
        if cuda:
            torch.cuda.synchronize()
            if r >= warmup:
                for name, (start, end) in events.items():
                    times[name].append(start.elapsed_time(end))
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated, from " + ", ".join(MODEL_NAMES))
    ap.add_argument("--steps", type=int, default=30, help="timed rounds (one update of each variant per round)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument(
        "--width-multiplier",
        type=float,
        default=None,
        help="for preresnet32 and vgg16; default 1 on CUDA, 0.25 / 0.125 on CPU",
    )
    args = ap.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; allowed: {', '.join(MODEL_NAMES)}")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is available")
    torch.set_num_threads(args.threads)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{args.threads}"
    print(
        f"torch {torch.__version__}, device {dev_name}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at start; B={BATCH}, l={L}, {args.warmup} warm-up + {args.steps} timed rounds"
    )
    t_start = time.perf_counter()
    rows, busy = [], []
    for name in names:
        if name in CPU_WIDTH_MULTIPLIERS:
            wm = args.width_multiplier or (1.0 if device.type == "cuda" else CPU_WIDTH_MULTIPLIERS[name])
        else:
            wm = 1.0
        torch.manual_seed(0)
        model = build_model(model_spec(name, wm), IN_SHAPES[name], N_CLASSES).to(device).train()
        streams = make_batches(name, device)
        label = name if name not in CPU_WIDTH_MULTIPLIERS else f"{name} x{wm:g}"
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{label}: {n_params:,} trainable parameters", flush=True)
        r32 = check(model, streams)
        print("  " + check_line(label, torch.float32, r32), flush=True)
        status = "ok"
        if not r32["passed"]:
            # float32 summation order differs between one 2B pass and two B passes; in float64
            # the two agree to ~1e-14 relative unless the implementation is wrong.
            r64 = check(model, streams, torch.float64)
            exact = r64["grad_rel"] < 1e-10 and r64["buf_diff"] <= 1e-10 * max(1.0, r64["grad_max"])
            print("  " + check_line(label, torch.float64, r64), flush=True)
            print(f"  float64 agreement to 1e-10 relative: {'yes, float32 rounding' if exact else 'NO'}", flush=True)
            status = "ok64" if exact else "FAIL"
        with ForeignLoad() as fl:
            ms = bench(model, streams, device, args.steps, args.warmup)
        rows.append((label, ms, fl.cores, status))
        if fl.cores is not None and fl.cores > 0.1:
            busy.append(label)
        print(f"  timed {label} ({time.perf_counter() - t_start:.0f} s)", flush=True)
    dev_col = device.type if device.type == "cuda" else f"cpu/{args.threads}t"
    print(f"\nms per update (median of {args.steps}), B={BATCH} per batch, svag/naive process 2B, l={L}")
    head = (
        f"{'model':<18} {'device':<8} {'B':>4} {'plain':>9} {'svag':>9} {'naive':>9} "
        f"{'svag/plain':>10} {'naive/plain':>11} {'others':>6} {'check':>5}"
    )
    print(head)
    print("-" * len(head))
    for label, ms, others, status in rows:
        oth = f"{others:6.2f}" if others is not None else f"{'?':>6}"
        print(
            f"{label:<18} {dev_col:<8} {BATCH:>4} {ms['plain']:9.2f} {ms['svag']:9.2f} {ms['naive']:9.2f} "
            f"{ms['svag'] / ms['plain']:10.2f} {ms['naive'] / ms['plain']:11.2f} {oth} {status:>5}"
        )
    print("(target: svag/plain <= 2.0; others: cores' worth of CPU other processes used meanwhile, ~0 when idle)")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    if busy:
        print(
            f"WARNING: other processes used > 0.1 core while timing {', '.join(busy)}: they shared the "
            "CPUs and those timings are unreliable; rerun on an idle machine."
        )
    if any(r[3] != "ok" for r in rows):
        print(
            "check: ok = svag and naive gradients allclose in float32; ok64 = not within the float32 tolerance "
            "but equal to 1e-10 in float64 (rounding only); FAIL = they differ (see the check lines)."
        )


if __name__ == "__main__":
    main()
