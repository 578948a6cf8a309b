"""Benchmark: train K seeds of the demo MLP one after another, or packed in one process.

Standalone (writes nothing). Variants, for K copies of the project's ``mlp`` (width 256,
depth 3, BatchNorm1d(affine=False, eps=1e-30), frozen classifier), 1x28x28 input, batch
128, SGD(lr 0.1, momentum 0.9, weight decay 5e-4), cross-entropy:

  seq   K nn.Module models, each forward + backward + its own SGD step, in turn;
  bmm   hand-packed: weights (K, in, out), torch.bmm, per-model batch norm over the
        batch dimension of a (K, B, C) tensor, one summed loss, one backward, one SGD
        step over the stacked parameters (each slice is independent, so this is exact);
  vmap  torch.func.stack_module_state + functional_call + vmap over the K models, the
        BatchNorm running buffers stacked too and updated in place under vmap.

All variants keep the BatchNorm running statistics up to date, as the project's training does.
First a correctness check (5 steps from identical weights and batches, each packed slice
against its sequential model: float64 to 1e-10, float32 to 1e-5 relative; in float32 one
model can depart at ~1e-3 when a pre-activation within ~1e-6 of zero lands on the other
side of the ReLU in the two summation orders), then timings: for threads in
(1, 2) and K in (4, 8), the median over 5 repeats of 50 steps (after 10 warm-up steps),
the variants interleaved within each repeat; reported as model-steps per second, with
the CPU other processes used meanwhile (the timings mean little unless that is ~0).

    .venv/bin/python workflow/bench/bench_packed_seeds.py [--steps 50 --repeats 5 --warmup 10]
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
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarking.py
from benchmarking import ForeignLoad  # noqa: E402

from lrdynamics.engine.models import mlp  # noqa: E402

IN_SHAPE, N_CLASSES, WIDTH, DEPTH, BATCH = (1, 28, 28), 10, 256, 3, 128
LR, MOMENTUM, WD, EPS, BN_MOMENTUM = 0.1, 0.9, 5e-4, 1e-30, 0.1
N_BATCHES = 8  # pre-generated synthetic batches, cycled (data cost kept out of the timing)


def make_models(k: int, seed0: int = 0, dtype=torch.float32) -> list[nn.Module]:
    models = []
    for i in range(k):
        torch.manual_seed(seed0 + i)
        models.append(
            mlp(
                IN_SHAPE, N_CLASSES, width=WIDTH, depth=DEPTH, norm="bn", groups=8, norm_eps=EPS, freeze_last_layer=True
            )
            .train()
            .to(dtype)
        )
    return models


def make_batches(k: int, n: int = N_BATCHES, seed: int = 1234, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, k, BATCH, *IN_SHAPE, generator=g).to(dtype)
    ys = torch.randint(0, N_CLASSES, (n, k, BATCH), generator=g)
    return xs, ys


# ---------------------------------------------------------------- sequential
class Sequential:
    name = "seq"

    def __init__(self, models):
        self.models = [copy.deepcopy(m) for m in models]
        self.opts = [
            torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=LR, momentum=MOMENTUM, weight_decay=WD)
            for m in self.models
        ]

    def step(self, x, y):  # x: (K, B, 1, 28, 28), y: (K, B)
        for i, (m, opt) in enumerate(zip(self.models, self.opts)):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x[i]), y[i]).backward()
            opt.step()

    def weights(self):
        """Per layer, a (K, in, out) stack of the trainable weights."""
        lins = [[mod for mod in m.features if isinstance(mod, nn.Linear)] for m in self.models]
        return [torch.stack([ls[j].weight.detach().t() for ls in lins]) for j in range(DEPTH)]


# ---------------------------------------------------------------- packed, by hand with bmm
class PackedBmm:
    name = "bmm"

    def __init__(self, models):
        k = len(models)
        lins = [[mod for mod in m.features if isinstance(mod, nn.Linear)] for m in models]
        self.ws = [
            torch.stack([ls[j].weight.detach().t() for ls in lins]).contiguous().requires_grad_(True)
            for j in range(DEPTH)
        ]
        self.w_out = torch.stack([m.classifier.weight.detach().t() for m in models]).contiguous()  # frozen
        dt = self.ws[0].dtype
        self.running = [(torch.zeros(k, 1, WIDTH, dtype=dt), torch.ones(k, 1, WIDTH, dtype=dt)) for _ in range(DEPTH)]
        self.opt = torch.optim.SGD(self.ws, lr=LR, momentum=MOMENTUM, weight_decay=WD)

    def forward(self, x):  # x: (K, B, ...) -> logits (K, B, classes)
        h = x.flatten(2)
        for w, (rm, rv) in zip(self.ws, self.running):
            h = torch.bmm(h, w)
            var, mean = torch.var_mean(h, dim=1, keepdim=True, correction=0)
            with torch.no_grad():  # running stats as BatchNorm1d keeps them (unbiased var)
                n = h.shape[1]
                rm.lerp_(mean, BN_MOMENTUM)
                rv.lerp_(var * (n / (n - 1)), BN_MOMENTUM)
            h = torch.relu((h - mean) * torch.rsqrt(var + EPS))
        return torch.bmm(h, self.w_out)

    def step(self, x, y):
        self.opt.zero_grad(set_to_none=True)
        logits = self.forward(x)
        k, b = y.shape
        # sum over models of each model's mean loss: each slice gets its own model's gradient
        loss = F.cross_entropy(logits.reshape(k * b, -1), y.reshape(-1), reduction="sum") / b
        loss.backward()
        self.opt.step()

    def weights(self):
        return [w.detach() for w in self.ws]


# ---------------------------------------------------------------- packed with torch.func
class PackedVmap:
    name = "vmap"

    def __init__(self, models):
        from torch.func import functional_call, stack_module_state

        params, buffers = stack_module_state(copy.deepcopy(models))
        # stack_module_state makes every stacked param a leaf requiring grad; the frozen
        # classifier must stay frozen (and out of the optimizer).
        frozen = {n for n, p in models[0].named_parameters() if not p.requires_grad}
        for n in frozen:
            params[n] = params[n].detach()
        self.params, self.buffers = params, buffers
        self.trainable = [params[n] for n in params if n not in frozen]
        base = copy.deepcopy(models[0]).to("meta")

        def f(p, b, x):
            return functional_call(base, (p, b), (x,))

        # buffers batched (in_dims 0): BatchNorm's in-place running-stat update then
        # writes each model's slice of the stacked buffers.
        self.fwd = torch.vmap(f, in_dims=(0, 0, 0))
        self.opt = torch.optim.SGD(self.trainable, lr=LR, momentum=MOMENTUM, weight_decay=WD)
        self.names = [n for n in params if n not in frozen]

    def step(self, x, y):
        self.opt.zero_grad(set_to_none=True)
        logits = self.fwd(self.params, self.buffers, x)
        k, b = y.shape
        loss = F.cross_entropy(logits.reshape(k * b, -1), y.reshape(-1), reduction="sum") / b
        loss.backward()
        self.opt.step()

    def weights(self):
        return [self.params[n].detach().transpose(1, 2) for n in self.names]


# ---------------------------------------------------------------- checks and timing
def rel_err(a, b):
    return float((a - b).detach().norm() / b.detach().norm())


def check(k=4, steps=5, dtype=torch.float32, tol=1e-5):
    """Run seq and each packed variant 5 steps from the same weights and batches.

    Returns {variant: (passed, worst per-model relative error, per-model errors)} and the
    reason vmap was skipped (or None). The error of a model is the max over its layer
    weights and its first BatchNorm's running mean, relative to the sequential model.
    """
    models = make_models(k, dtype=dtype)
    xs, ys = make_batches(k, dtype=dtype)
    seq = Sequential(models)
    w0 = seq.weights()
    variants = [PackedBmm(models)]
    vmap_error = None
    try:
        variants.append(PackedVmap(models))
    except Exception as e:  # noqa: BLE001
        vmap_error = f"{type(e).__name__}: {e}"
    for s in range(steps):
        seq.step(xs[s], ys[s])
    ref = seq.weights()
    ref_rm = torch.stack([m.features[2].running_mean for m in seq.models])
    # the weights must have moved (a no-op update would trivially match)
    moved = min(rel_err(w, r) for w, r in zip(w0, ref))
    ok = {}
    for v in list(variants):
        try:
            for s in range(steps):
                v.step(xs[s], ys[s])
        except Exception as e:  # noqa: BLE001
            vmap_error = f"{type(e).__name__}: {e}"
            continue
        rm = v.running[0][0].squeeze(1) if isinstance(v, PackedBmm) else v.buffers["features.2.running_mean"]
        per_model = [
            max([rel_err(w[i], r[i]) for w, r in zip(v.weights(), ref)] + [rel_err(rm[i], ref_rm[i])]) for i in range(k)
        ]
        passed = max(per_model) < tol and moved > 1e-4
        ok[v.name] = (passed, max(per_model), per_model)
        print(
            f"check {v.name} ({str(dtype).replace('torch.', '')}, K={k}, {steps} steps, weights moved "
            f"{moved:.1e}): per-model max rel err {' '.join(f'{e:.1e}' for e in per_model)} "
            f"-> {'PASS' if passed else 'FAIL'}, {sum(e < tol for e in per_model)}/{k} models within {tol:g}"
        )
    if vmap_error:
        print(f"check vmap: skipped, {vmap_error}")
    return ok, vmap_error


def bench(k, threads, steps, repeats, warmup, use_vmap):
    torch.set_num_threads(threads)
    models = make_models(k)
    xs, ys = make_batches(k)
    variants = [Sequential(models), PackedBmm(models)] + ([PackedVmap(models)] if use_vmap else [])
    for v in variants:
        for s in range(warmup):
            v.step(xs[s % N_BATCHES], ys[s % N_BATCHES])
    times = {v.name: [] for v in variants}
    for r in range(repeats):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]  # rotate the order
        for v in order:
            t0 = time.perf_counter()
            for s in range(steps):
                v.step(xs[s % N_BATCHES], ys[s % N_BATCHES])
            times[v.name].append(time.perf_counter() - t0)
    return {n: [k * steps / s for s in t] for n, t in times.items()}  # model-steps/s per repeat


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-check", action="store_true", help="skip the correctness check (vmap timed anyway)")
    args = ap.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} default threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    t_start = time.perf_counter()
    torch.set_num_threads(1)
    # float64: exactness of the packing (rounding too small to flip any ReLU);
    # float32: what training sees. In float32 a pre-activation within ~1e-6 of zero can
    # take the other side of the ReLU kink in the two summation orders (bmm vs mm), after
    # which that model's trajectory departs at ~1e-4 relative; not a packing error.
    if args.no_check:
        ok = {"vmap": (True,)}
    else:
        ok, _ = check(dtype=torch.float64, tol=1e-10)
        check(dtype=torch.float32, tol=1e-5)
    use_vmap = "vmap" in ok and ok["vmap"][0]
    if "vmap" in ok and not ok["vmap"][0]:
        print("vmap: not exact in float64, left out of the timings")
    rows, busy = [], []
    for threads in args.threads:
        for k in args.ks:
            with ForeignLoad() as fl:
                r = {
                    n: statistics.median(v)
                    for n, v in bench(k, threads, args.steps, args.repeats, args.warmup, use_vmap).items()
                }
            rows.append((k, threads, r, fl.cores))
            if fl.cores is not None and fl.cores > 0.1:
                busy.append(f"K={k}/threads={threads}")
            print(f"  done K={k} threads={threads} ({time.perf_counter() - t_start:.0f} s)", flush=True)
    print(f"\nmodel-steps/s (median of {args.repeats} x {args.steps} steps, batch {BATCH}, mlp {DEPTH}x{WIDTH})")
    head = f"{'K':>3} {'thr':>3} {'seq':>9} {'bmm':>9} {'vmap':>9} {'bmm/seq':>8} {'vmap/seq':>9} {'others':>7}"
    print(head)
    print("-" * len(head))
    for k, threads, r, others in rows:
        vm = f"{r['vmap']:9.1f}" if "vmap" in r else f"{'skipped':>9}"
        vr = f"{r['vmap'] / r['seq']:9.2f}" if "vmap" in r else f"{'-':>9}"
        oth = f"{others:7.2f}" if others is not None else f"{'?':>7}"
        print(f"{k:>3} {threads:>3} {r['seq']:9.1f} {r['bmm']:9.1f} {vm} {r['bmm'] / r['seq']:8.2f} {vr} {oth}")
    print("(others: cores' worth of CPU that other processes used during that row; 0 on an idle machine)")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    if busy:
        print(
            f"WARNING: other processes used > 0.1 core during {', '.join(busy)}: they "
            "shared the CPUs and those timings (2-thread ones most) are unreliable; rerun on an idle machine."
        )


if __name__ == "__main__":
    main()
