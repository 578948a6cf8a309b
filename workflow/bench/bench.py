"""``make bench``: the training engine measured against the conventional way, in one run.

Writes ``results/bench/bench.json`` and prints a table. Every figure is the median over
``--repeats`` chunks with its range [min, max]; the variants of a comparison run in turn,
chunk by chunk (interleaved, the order rotated each repeat), and each ratio is the median
of the per-repeat ratios, so drift in machine speed hits both sides alike.

Sections (B = 128, SGD lr 0.1, momentum 0.9, WD 5e-4, crop with padding 4 and flip):

- train: ``lrdynamics.engine.trainer.Trainer.update`` (what a training job runs per update: the
  batch drawn and augmented on the device, forward, backward, per-update LR/WD, the angle
  and loss sums) against the usual code: a torchvision dataset (``FashionMNIST``;
  ``CIFAR10`` for PreResNet32) with per-sample ``RandomCrop(padding=4)``,
  ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``, a shuffling ``DataLoader``
  (0 workers, and on >= 2 CPUs also 1 worker), ``torch.optim.SGD``. The same model
  (``build_model``), the same torch threads. The speedup is against the faster reference.
  Demo model: the demo's MLP on the real Fashion-MNIST (10k subset). PreResNet32: 3x32x32
  images in CIFAR-10's own files (random pixels written by this script, since CIFAR-10
  cannot be downloaded everywhere; speed does not depend on pixel values), read by
  torchvision's CIFAR10 class for the reference and by ``lrdynamics.engine.data`` for ours. Our
  PreResNet32 is timed in both layouts (``channels_last_speedup``).
- augmentation: our batch stream (``BatchStream.next``: index, crop, flip) against
  iterating the reference ``DataLoader`` (0 workers) with no training, images/s.
- svag: ``Trainer.update`` with ``optimizer.svag`` l = 4 against l = 1 (momentum 0),
  time per update (each SVAG update draws and processes two batches).
- ensembles: seed ensembles (``training.ensemble``) against separate jobs and against one
  model after another, and a job's start-up (``bench_ensemble.py``).
- dryrun: ``snakemake -n --configfile config/paper.yaml``: seconds and job count.
- cuda (only on a CUDA device): PreResNet32 at B = 128, time per epoch (391 updates)
  and achieved FLOP/s as a fraction of the device's peak, eager vs ``torch.compile`` vs
  compiled with CUDA graphs (mode reduce-overhead), fp32 (TF32 off) vs bf16 autocast.

    .venv/bin/python workflow/bench/bench.py [--device auto|cpu|cuda] [--threads 1]
        [--repeats 5] [--out results/bench/bench.json]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ensemble  # noqa: E402
from benchmarking import ForeignLoad  # noqa: E402

from lrdynamics.config import load_config  # noqa: E402
from lrdynamics.engine.data import IDX_FILES, load_prepared, prepare_dataset, raw_locations  # noqa: E402
from lrdynamics.engine.devices import resolve_device  # noqa: E402
from lrdynamics.engine.models import build_model  # noqa: E402
from lrdynamics.engine.schedules import steps_per_epoch  # noqa: E402
from lrdynamics.engine.trainer import Trainer  # noqa: E402

BATCH, PADDING = 128, 4
CIFAR_TRAIN = 5000  # synthetic CIFAR-format images written for the benchmark
# Dense peak FLOP/s by device name fragment: (fp32 without tensor cores, bf16 tensor cores).
PEAK_FLOPS = {"H100": (67e12, 989e12), "H200": (67e12, 989e12), "A100": (19.5e12, 312e12), "L40S": (91.6e12, 362e12)}


# ----------------------------------------------------------------------------- timing
def timed(fn, n: int, cuda: bool) -> float:
    """Seconds for n calls of fn (device synchronized before and after on CUDA)."""
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def interleaved(variants: dict, n: int, repeats: int, warmup: int, cuda: bool) -> dict[str, list[float]]:
    """Seconds per call of each variant, per repeat; variants run in turn, order rotated."""
    names = list(variants)
    for name in names:
        timed(variants[name], warmup, cuda)
    out = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out[name].append(timed(variants[name], n, cuda) / n)
    return out


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def ratio(num: list[float], den: list[float]) -> dict:
    """Per-repeat ratios num/den (same repeat, interleaved): median and range."""
    return summary([a / b for a, b in zip(num, den)])


def rate(seconds: list[float], per_call: float) -> dict:
    """Things per second (per_call things per call), from seconds per call."""
    return summary([per_call / s for s in seconds])


# ----------------------------------------------------------------------------- data
def write_synthetic_cifar10(folder: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """CIFAR-10's python files (5 train batches, test batch, meta) with random pixels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n, label):
        return {
            "batch_label": label,
            "labels": [int(v) for v in rng.integers(0, 10, n)],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"{i}.png" for i in range(n)],
        }

    members = {f"data_batch_{i}": batch(n_train // 5, f"training batch {i} of 5") for i in range(1, 6)}
    members["test_batch"] = batch(n_test, "testing batch 1 of 1")
    members["batches.meta"] = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    for name, content in members.items():
        with open(folder / name, "wb") as f:
            pickle.dump(content, f, protocol=2)


def torchvision_fashion_mnist_root(tmp: Path, data_dir: Path) -> Path:
    """A root in torchvision's FashionMNIST layout (raw/ with the 4 IDX files unzipped)."""
    source = next(
        (p for p in raw_locations("fashion_mnist", data_dir) if p.is_dir() and any(p.iterdir())),
        None,
    )
    if source is None:
        raise SystemExit("bench: Fashion-MNIST not found; run `make data` first")
    raw = tmp / "torchvision" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for images, labels in IDX_FILES.values():
        for stem in (images, labels):
            gz, plain = source / (stem + ".gz"), source / stem
            with gzip.open(gz) if gz.is_file() else open(plain, "rb") as f, open(raw / stem, "wb") as out:
                shutil.copyfileobj(f, out)
    return tmp / "torchvision"


def normalization(prepared: Path):
    """Per-channel mean and std of a prepared dataset (what our engine normalizes with)."""
    record = load_prepared(prepared / "train.pt")
    return record["mean"], record["std"]


def reference_dataset(kind: str, root: Path, mean, std, n: int):
    """The conventional pipeline: a torchvision dataset with per-sample transforms."""
    import torchvision
    import torchvision.transforms as T

    side = 28 if kind == "fashion_mnist" else 32
    tf = T.Compose(
        [T.RandomCrop(side, padding=PADDING), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
    )
    if kind == "fashion_mnist":
        ds = torchvision.datasets.FashionMNIST(str(root), train=True, transform=tf)
    else:

        class LocalCIFAR10(torchvision.datasets.CIFAR10):
            # torchvision checks the files against the published MD5s; ours hold random
            # pixels in the same format, so only that check is skipped (the reading is not).
            def _check_integrity(self) -> bool:
                return True

            def _load_meta(self) -> None:
                with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                    self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]

        ds = LocalCIFAR10(str(root), train=True, transform=tf)
    return torch.utils.data.Subset(ds, range(min(n, len(ds))))


class ReferenceTraining:
    """The usual PyTorch loop: DataLoader batches moved to the device, torch.optim.SGD."""

    def __init__(self, dataset, model_spec, in_shape, device, workers: int):
        self.device = device
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=BATCH,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=device.type == "cuda",
        )
        torch.manual_seed(0)
        self.model = build_model(model_spec, in_shape, 10).to(device).train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
        self.batches = iter(self.loader)

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self):
        x, y = self.next_batch()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


# ----------------------------------------------------------------------------- runs
def bench_config(data_dir: Path, device: str) -> dict:
    sgd = {"name": "sgd", "momentum": 0.9}
    schedule = {"name": "constant", "lr": 0.1, "wd": 5.0e-4}
    return {
        "device": device,
        "data_dir": str(data_dir),
        "datasets": {
            "fmnist": {"source": "fashion_mnist", "train_subset": 10000, "test_subset": 1000},
            "cifar": {"source": "cifar10"},
        },
        "run_defaults": {
            "optimizer": sgd,
            "schedule": schedule,
            "training": {"batch_size": BATCH, "epochs": 400, "crop_padding": PADDING, "flip": True},
            "evaluation": {"every": 400, "unit": "epoch"},
        },
        "experiments": {
            "demo": {"dataset": "fmnist", "model": {"name": "mlp", "width": 256, "depth": 3, "norm": "bn"}},
            "demo_svag": {
                "dataset": "fmnist",
                "model": {"name": "mlp", "width": 256, "depth": 3, "norm": "bn"},
                "optimizer": {"momentum": 0.0},
                "grid": {"optimizer.svag": [1, 4]},
            },
            "preresnet32": {
                "dataset": "cifar",
                "model": {
                    "name": "preresnet32",
                    "norm": "bn",
                },
                "training": {"epochs": 40},
                "grid": {"training.channels_last": [True, False]},
            },
        },
    }


def training(runs, name: str, threads: int, **point) -> Trainer:
    for run in runs[name].values():
        if all(run["hyperparameters"].get(k) == v for k, v in point.items()):
            t = Trainer(copy.deepcopy(run), threads)
            t.model.train()
            t.start_updates()
            counter = iter(range(10**9))
            t.bench_step = lambda t=t, c=counter: t.update(next(c))
            return t
    raise KeyError(f"{name} {point}")


def section_train(label, ours: dict, refs: dict, n, repeats, warmup, cuda) -> dict:
    """Ours (one or more Trainer variants) vs the reference loops, interleaved."""
    variants = {k: t.bench_step for k, t in ours.items()} | {k: r.step for k, r in refs.items()}
    with ForeignLoad() as fl:
        sec = interleaved(variants, n, repeats, warmup, cuda)
    first = next(iter(ours))
    best_ref = min(refs, key=lambda k: statistics.median(sec[k]))
    out = {
        "images_per_second": {k: rate(v, BATCH) for k, v in sec.items()},
        "reference_used": best_ref,
        "speedup": ratio(sec[best_ref], sec[first]),
        "speedup_vs_each_reference": {k: ratio(sec[k], sec[first])["median"] for k in refs},
        "other_processes_cores": fl.cores,
        "steps_per_repeat": n,
    }
    print(f"  {label}: done", flush=True)
    return out


def section_compiled(runs, threads, repeats, device, modes=("eager", "compiled", "cuda_graphs"), n=50) -> dict:
    """PreResNet32 epoch time and FLOP/s fraction: eager/compiled/CUDA graphs x fp32/bf16
    (and eager in both layouts). Run on CUDA by ``make bench``; a variant that fails is
    recorded with its error instead of stopping the benchmark."""
    from torch.utils.flop_counter import FlopCounterMode

    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    peaks = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    base = next(iter(runs["preresnet32"].values()))
    spe = steps_per_epoch(50000, BATCH, False)
    out = {"device_name": name, "peak_flops_fp32_bf16": peaks, "steps_per_epoch": spe, "variants": {}}
    variants = [(m, p, False) for p in ("float32", "bfloat16") for m in modes]
    variants += [("eager", p, True) for p in ("float32", "bfloat16") if "eager" in modes]
    for mode, precision, channels_last in variants:
        label = f"{mode}_{precision}" + ("_channels_last" if channels_last else "")
        run = copy.deepcopy(base)
        run["training"].update(autocast=None if precision == "float32" else "bfloat16", channels_last=channels_last)
        try:
            t = Trainer(run, threads)
            t.model.train()
            t.start_updates()
            with FlopCounterMode(display=False) as counter:
                t.update(0)
            flops = counter.get_total_flops()
            if mode != "eager":
                t.model = torch.compile(t.model, mode="reduce-overhead" if mode == "cuda_graphs" else None)
            counter_it = iter(range(1, 10**9))

            def one_update(t=t, counter_it=counter_it):
                t.update(next(counter_it))

            sec = interleaved({label: one_update}, n, repeats, max(2, n // 2), cuda)[label]
        except Exception as err:  # noqa: BLE001 (recorded, the other variants still run)
            out["variants"][label] = {"error": f"{type(err).__name__}: {err}"[:500]}
            print(f"  {label}: failed ({type(err).__name__})", flush=True)
            continue
        step = statistics.median(sec)
        peak = None if peaks is None else peaks[0 if precision == "float32" else 1]
        out["variants"][label] = {
            "step_seconds": summary(sec),
            "epoch_seconds": step * spe,
            "flops_per_step": flops,
            "achieved_flops": flops / step,
            "fraction_of_peak": None if peak is None else flops / step / peak,
        }
        print(f"  {label}: {step * spe:.1f} s/epoch", flush=True)
        del t
        if cuda:
            torch.cuda.empty_cache()
    return out


def dryrun_paper(repeats: int = 3) -> dict:
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [str(snakemake), "-n", "--configfile", "config/paper.yaml", "--cores", "1"]
    seconds, jobs = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        seconds.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        m = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.MULTILINE)
        jobs = int(m.group(1)) if m else None
    return {"seconds": summary(seconds), "jobs": jobs}


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the demo's train_threads: 1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="one short repeat of everything (a smoke test)")
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "bench.json"))
    ap.add_argument("--data-dir", default=str(REPO / "resources"), help="where Fashion-MNIST is looked for")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    cpus = os.cpu_count() or 1
    dev_label = f"{torch.cuda.get_device_name(device)}" if cuda else f"cpu ({cpus} cores, {args.threads} thread(s))"
    print(f"bench: torch {torch.__version__}, {dev_label}, load average {os.getloadavg()[0]:.2f} at start")
    t_start = time.perf_counter()
    R = 1 if args.quick else args.repeats
    n_small = 5 if args.quick else 40  # updates per chunk, demo MLP
    n_pr = 1 if args.quick else (20 if cuda else 2)  # PreResNet32
    results: dict = {"device": dev_label, "torch": torch.__version__, "threads": args.threads, "repeats": R}
    with tempfile.TemporaryDirectory(prefix="lrdynamics-bench-") as tmp:
        tmp = Path(tmp)
        # Our prepared datasets (lrdynamics.engine.data) and the same files for torchvision.
        tv_root = torchvision_fashion_mnist_root(tmp, Path(args.data_dir))
        write_synthetic_cifar10(tmp / "raw" / "cifar-10-batches-py", CIFAR_TRAIN, 1000)
        config = load_config(bench_config(tmp, "cuda" if cuda else "cpu"))
        runs = config["runs"]
        for name, spec in config["datasets"].items():
            src_dir = tmp if spec["source"] == "cifar10" else Path(args.data_dir)
            prepare_dataset(spec, src_dir, tmp / name)
        for exp in runs.values():
            for run in exp.values():
                run["dataset_dir"] = str(tmp / run["dataset"])

        # --- demo model --------------------------------------------------------------
        ours = training(runs, "demo", args.threads)
        mean, std = normalization(tmp / "fmnist")
        workers = [0, 1] if cpus >= 2 else [0]
        ref_ds = reference_dataset("fashion_mnist", tv_root, mean, std, 10000)
        refs = {
            f"reference_{w}w": ReferenceTraining(ref_ds, ours.run["model"], (1, 28, 28), device, w) for w in workers
        }
        results["train_demo"] = section_train("train demo MLP", {"ours": ours}, refs, n_small, R, 2, cuda)
        # augmentation alone: our stream vs iterating the reference DataLoader (0 workers)
        stream, ref0 = ours.streams[0], refs["reference_0w"]
        with ForeignLoad() as fl:
            sec = interleaved({"ours": stream.next, "reference_0w": ref0.next_batch}, n_small, R, 2, cuda)
        results["augmentation"] = {
            "images_per_second": {k: rate(v, BATCH) for k, v in sec.items()},
            "speedup": ratio(sec["reference_0w"], sec["ours"]),
            "other_processes_cores": fl.cores,
        }
        print("  augmentation: done", flush=True)
        # SVAG l=4 vs plain SGD, both through Trainer.update
        sv = {f"l={p}": training(runs, "demo_svag", args.threads, svag=p) for p in (1, 4)}
        with ForeignLoad() as fl:
            sec = interleaved({k: t.bench_step for k, t in sv.items()}, n_small, R, 2, cuda)
        results["svag"] = {
            "seconds_per_update": {k: summary(v) for k, v in sec.items()},
            "ratio": ratio(sec["l=4"], sec["l=1"]),
            "other_processes_cores": fl.cores,
        }
        print("  svag: done", flush=True)
        del refs, ours, sv

        # --- PreResNet32 ---------------------------------------------------------------
        pr = {
            "ours_channels_last": training(runs, "preresnet32", args.threads, channels_last=True),
            "ours_contiguous": training(runs, "preresnet32", args.threads, channels_last=False),
        }
        mean, std = normalization(tmp / "cifar")
        ref_ds = reference_dataset("cifar10", tmp / "raw", mean, std, CIFAR_TRAIN)
        ref = {"reference_0w": ReferenceTraining(ref_ds, pr["ours_contiguous"].run["model"], (3, 32, 32), device, 0)}
        from lrdynamics.engine.devices import CHANNELS_LAST

        first = "ours_channels_last" if CHANNELS_LAST[device.type] else "ours_contiguous"
        ordered = {first: pr[first]} | pr
        results["train_preresnet32"] = section_train("train PreResNet32", ordered, ref, n_pr, R, 1, cuda)
        sec_img = results["train_preresnet32"]["images_per_second"]
        results["train_preresnet32"]["engine_layout"] = first
        results["channels_last_speedup"] = (
            sec_img["ours_channels_last"]["median"] / sec_img["ours_contiguous"]["median"]
        )
        del pr, ref

        # --- packing, dry run, CUDA ----------------------------------------------------------
        results["ensembles"] = bench_ensemble.bench_ensembles(Path(args.data_dir), tmp / "ensembles", args.quick,
                                                              device.type)  # fmt: skip
        results["dryrun"] = dryrun_paper(1 if args.quick else 3)
        print("  dry run: done", flush=True)
        results["cuda"] = (
            section_compiled(runs, args.threads, R, device)
            if cuda
            else {"measured": False, "why": "no CUDA device here; the code path runs when one is present"}
        )

    results.update(
        train_speedup_vs_reference=results["train_demo"]["speedup"]["median"],
        train_speedup_vs_reference_preresnet32=results["train_preresnet32"]["speedup"]["median"],
        augmentation_speedup_vs_reference=results["augmentation"]["speedup"]["median"],
        svag_step_time_ratio=results["svag"]["ratio"]["median"],
        ensemble_speedup_vs_separate_jobs=results["ensembles"]["function_space"]["speedup"],
        ensemble_speedup_vs_separate_jobs_demo_mlp=results["ensembles"]["demo_mlp"]["speedup"],
        ensemble_speedup_vs_sequential={k: v["median"] for k, v in results["ensembles"]["vs_sequential"].items()},
        job_startup_seconds=results["ensembles"]["startup"],
        dryrun_paper_seconds=results["dryrun"]["seconds"]["median"],
        dryrun_paper_jobs=results["dryrun"]["jobs"],
        total_seconds=time.perf_counter() - t_start,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"\nwrote {out} ({results['total_seconds']:.0f} s)")
    return 0


def _fmt(s: dict, scale: float = 1.0, digits: int = 0) -> str:
    return f"{s['median'] * scale:.{digits}f} [{s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f}]"


def print_table(r: dict) -> None:
    print(f"\n{r['device']}, torch {r['torch']}; median [min-max] of {r['repeats']} interleaved repeats")
    rows: list[tuple[str, str]] = []
    for key, label in (("train_demo", "train, demo MLP"), ("train_preresnet32", "train, PreResNet32")):
        s = r[key]
        for variant, ips in s["images_per_second"].items():
            rows.append((f"{label}: {variant}", f"{_fmt(ips)} img/s"))
        rows.append((f"{label}: speedup vs {s['reference_used']}", _fmt(s["speedup"], digits=2) + "x"))
    rows.append(("channels-last / contiguous (PreResNet32)", f"{r['channels_last_speedup']:.2f}x"))
    a = r["augmentation"]
    for variant, ips in a["images_per_second"].items():
        rows.append((f"augmentation: {variant}", f"{_fmt(ips)} img/s"))
    rows.append(("augmentation speedup", _fmt(a["speedup"], digits=1) + "x"))
    s = r["svag"]
    for variant, sec in s["seconds_per_update"].items():
        rows.append((f"update, demo MLP, SVAG {variant}", f"{_fmt(sec, 1e3, 2)} ms"))
    rows.append(("SVAG l=4 / plain update", _fmt(s["ratio"], digits=2) + "x"))
    e = r["ensembles"]
    for key, label in (("function_space", "function-space run"), ("demo_mlp", "demo MLP")):
        v = e[key]
        rows.append((f"ensemble of {v['members']}, {label}: one job / {v['members']} jobs",
                     f"{v['ensemble_job']['wall_s']:.1f} s / {v['separate_total_s_scaled']:.0f} s (scaled from "
                     f"{v['separate_jobs_timed']}): {v['speedup']:.1f}x"))  # fmt: skip
        rows.append((f"  one job of {label}: start-up + training", f"{v['separate_job']['startup_s']:.2f} s + "
                     f"{v['separate_job']['training_s']:.2f} s"))  # fmt: skip
    for k, v in e["vs_sequential"].items():
        rows.append((f"ensemble {k} / sequential, update loop", f"{_fmt(v, digits=2)}x"))
    rows.append(("job start-up, before / after skipping torch._dynamo",
                 f"{e['startup']['before']:.2f} / {e['startup']['after']:.2f} s"))  # fmt: skip
    for model, sizes in e.get("cuda", {}).items():
        for k, v in sizes.items():
            rows.append((f"cuda {model} ensemble {k}", f"{v['member_steps_per_second']:.0f} member-steps/s vs "
                         f"{v['one_model_steps_per_second']:.0f} (one model), utilization "
                         f"{v['device_utilization_percent']}%"))  # fmt: skip
    dry = r["dryrun"]
    rows.append(("snakemake -n, paper config", f"{_fmt(dry['seconds'], digits=1)} s, {dry['jobs']} jobs"))
    if r["cuda"].get("measured", True):
        for k, v in r["cuda"]["variants"].items():
            if "error" in v:
                rows.append((f"cuda PreResNet32 {k}", "failed: " + v["error"][:80]))
                continue
            frac = v["fraction_of_peak"]
            speed = f"{v['epoch_seconds']:.1f} s/epoch, {v['achieved_flops'] / 1e12:.1f} TFLOP/s"
            rows.append((f"cuda PreResNet32 {k}", speed + (f" ({frac:.1%} of peak)" if frac else "")))
    else:
        rows.append(("cuda", "not measured: " + r["cuda"]["why"]))
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{width}}  {b}")
    print(
        f"\ntrain_speedup_vs_reference {r['train_speedup_vs_reference']:.2f} (target >= 3), augmentation "
        f"{r['augmentation_speedup_vs_reference']:.1f} (>= 10), svag {r['svag_step_time_ratio']:.2f} (<= 2.0), "
        f"ensemble_speedup_vs_separate_jobs {r['ensemble_speedup_vs_separate_jobs']:.1f} (>= 10; demo MLP "
        f"{r['ensemble_speedup_vs_separate_jobs_demo_mlp']:.1f})"
    )
    loads = [r[k].get("other_processes_cores") for k in ("train_demo", "augmentation", "svag", "train_preresnet32")]
    if any(v is not None and v > 0.1 for v in loads):
        print("WARNING: other processes used CPU during the timings (see other_processes_cores); rerun when idle.")


if __name__ == "__main__":
    raise SystemExit(main())
