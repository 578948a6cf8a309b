"""Benchmark of seed ensembles (``training.ensemble``) and of a job's start-up; part of ``make bench``.

Runs (1 torch thread each, the demo's ``train_threads``):

- ``function_space``: the run the demo will use for function-space equilibrium
  (issue "Fast equilibrium in function space"). Its size is set by the demo's budget:
  128 seeds x (4 intrinsic LRs x 2 starts + 3 histories) = 1,408 member runs in about 5 of
  the demo's 15 minutes on 2 cores, ~0.4 s of one core per member run. Hence a BN MLP of
  width 32 and depth 2 on Fashion-MNIST at 14 px (10k images, B = 128), SGD lr 0.1,
  momentum 0.9, WD 1.6e-2 (intrinsic LR 1.6e-2, 1/(eta*lambda_e) = 62 steps: 8 epochs =
  625 steps are 10 relaxation times at this intrinsic LR and 5 at the smallest, 8e-3),
  evaluated every quarter epoch on 1,000 train and 1,000 test images with the predicted
  labels of 1,000 test images (the label distributions).
- ``demo_mlp``: the demo's MLP (width 256, depth 3), the same schedule, 1 epoch.

For each: one job ``python -m lrdynamics.train`` of the ensemble of K members, against K
separate jobs of one seed each. The separate jobs are timed on a few processes run one
after another and scaled to K (said in the output); each job's start-up (process start
to the first update: the process's wall time minus the run's training time,
``wall_time_s``, which also holds the file writing) is reported apart from its training.
``job_startup_seconds`` before/after: the same job with ``torch._dynamo`` imported first,
as torch.optim did before ``engine.optimizers.optimizer_step``, and without.

``ensemble_speedup_vs_sequential``: in one process, start-up excluded, the update loop
of K = 8, 32, 128 members (``Members.update``) against K times one model's
(``Trainer.update``), the median of interleaved repeats.

``cuda`` (only on a CUDA device): the update loop of K = 8, 32, 128 members of cnn4 (width
32) and PreResNet32 (full width), both on Fashion-MNIST at 28 px, against K x one model's,
and the device's utilization (``torch.cuda.utilization``, where pynvml is installed) while
the ensemble trains.

``memory``: the estimated memory of one member (``ensemble.estimated_member_bytes``) of
each model at its paper size, and the K that 24 GiB and 80 GB hold (the estimate, not a
measurement; a job uses half the free memory by default).
"""

from __future__ import annotations

import copy
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from lrdynamics.config import load_config
from lrdynamics.engine.contract import member_run
from lrdynamics.engine.data import prepare_dataset
from lrdynamics.engine.ensemble import EnsembleTrainer, Members, estimated_member_bytes
from lrdynamics.engine.trainer import Trainer, initial_model

FUNCTION_SPACE = {
    "dataset": "fmnist14",
    "model": {"name": "mlp", "width": 32, "depth": 2, "norm": "bn"},
    "optimizer": {"name": "sgd", "momentum": 0.9},
    "schedule": {"name": "constant", "lr": 0.1, "wd": 1.6e-2},
    "training": {"batch_size": 128, "epochs": 8, "ensemble": 128},
    "evaluation": {
        "every": 0.25,
        "unit": "epoch",
        "train_samples": 1000,
        "test_samples": 1000,
        "prediction_samples": 1000,
    },  # fmt: skip
}
DEMO_MLP = {
    **FUNCTION_SPACE,
    "dataset": "fmnist",
    "model": {"name": "mlp", "width": 256, "depth": 3, "norm": "bn"},
    "training": {"batch_size": 128, "epochs": 1, "ensemble": 16},
    "evaluation": {"every": 0.25, "unit": "epoch", "train_samples": 5000, "test_samples": None},
}
# Paper-size members for the memory table: (model, dataset side and channels, batch size, optimizer).
PAPER_MODELS = {
    "mlp (demo, 256x3)": ({"name": "mlp", "width": 256, "depth": 3, "norm": "bn"}, (1, 28, 28), 128, "sgd"),
    "cnn4 (width 32, MNIST)": ({"name": "cnn4", "width": 32, "norm": "bn"}, (1, 28, 28), 128, "sgd"),
    "preresnet32 (CIFAR-10)": ({"name": "preresnet32", "norm": "bn"}, (3, 32, 32), 128, "sgd"),
    "resnet56 (CIFAR-10)": ({"name": "resnet56", "norm": "bn"}, (3, 32, 32), 128, "adam"),
    "vgg16 (CIFAR-10)": ({"name": "vgg16", "norm": "bn"}, (3, 32, 32), 128, "sgd"),
}


DATASETS = {
    "fmnist": {"source": "fashion_mnist", "train_subset": 10000, "test_subset": 1000},
    "fmnist14": {"source": "fashion_mnist", "train_subset": 10000, "test_subset": 1000, "resize": 14},
}


def _run(data_dir: Path, device: str, experiment: dict) -> dict:
    """The resolved run of ``experiment``, its dataset prepared under ``data_dir``."""
    config = load_config({"device": device, "data_dir": str(data_dir), "datasets": DATASETS,
                          "experiments": {"bench": experiment}})  # fmt: skip
    return next(iter(config["runs"]["bench"].values()))


def _job(run: dict, folder: Path, name: str, preimport_dynamo: bool = False) -> dict:
    """One training job in a fresh process: its wall time, and the run's training time."""
    cfg, out = folder / f"{name}.json", folder / f"{name}.nc"
    cfg.write_text(json.dumps(run))
    code = "import torch._dynamo; " if preimport_dynamo else ""
    code += f"from lrdynamics.train import main; raise SystemExit(main([{str(cfg)!r}, {str(out)!r}, '--threads', '1']))"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    wall = time.perf_counter() - start
    import xarray as xr

    with xr.open_dataset(out) as ds:
        training = float(ds.attrs["wall_time_s"])
    out.unlink()
    return {"wall_s": wall, "training_s": training, "startup_s": wall - training}


def separate_vs_ensemble(run: dict, folder: Path, n_separate: int) -> dict:
    """K separate one-seed jobs (n_separate timed, scaled to K) against one ensemble job."""
    k = run["training"]["ensemble"]
    singles = [_job(member_run(run, run["training"]["seed"] + i), folder, f"single{i}") for i in range(n_separate)]
    ensemble = _job(run, folder, "ensemble")
    mean = {key: statistics.mean(s[key] for s in singles) for key in singles[0]}
    separate_total = k * mean["wall_s"]
    return {
        "members": k,
        "separate_jobs_timed": n_separate,
        "separate_job": mean,
        "separate_total_s_scaled": separate_total,
        "ensemble_job": ensemble,
        "speedup": separate_total / ensemble["wall_s"],
        "how": f"K = {k} separate jobs estimated as {k} x the mean of {n_separate} timed one after another",
    }


def startup(run: dict, folder: Path, repeats: int) -> dict:
    """A one-seed job's start-up with torch._dynamo imported first (before) and without."""
    single = member_run(run, 0)
    single["training"]["epochs"] = 0.1
    before, after = [], []
    for _ in range(repeats):
        before.append(_job(single, folder, "before", preimport_dynamo=True)["startup_s"])
        after.append(_job(single, folder, "after")["startup_s"])
    return {"before": statistics.median(before), "after": statistics.median(after), "repeats": repeats}


def _utilization() -> float | None:
    try:
        return float(torch.cuda.utilization())
    except Exception:  # noqa: BLE001 (no pynvml, or no NVML)
        return None


def vs_sequential(run: dict, sizes, n: int, repeats: int) -> dict:
    """Update loop of K members at once against K x one model's, in this process (on CUDA
    with the device's utilization at the end of the ensemble's updates)."""
    torch.set_num_threads(1)
    single = Trainer(member_run(run, 0), threads=1)
    single.start_updates()
    cuda = single.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    out = {}
    for k in sizes:
        r = copy.deepcopy(run)
        r["training"].update(ensemble=k, ensemble_chunk=None)
        trainer = EnsembleTrainer(r, threads=1)
        members = Members(r, trainer.seeds, trainer.device, trainer.train, trainer.test, trainer.n_classes)
        members.start_updates()
        ratios, rates, busy = [], [], None
        for i in range(repeats + 1):
            sync()
            t0 = time.perf_counter()
            for j in range(n):
                members.update(i * n + j)
            sync()
            busy = _utilization() if cuda else None
            t1 = time.perf_counter()
            for j in range(n):
                single.update(i * n + j)
            sync()
            t2 = time.perf_counter()
            if i:  # the first repeat warms up
                ratios.append(k * (t2 - t1) / (t1 - t0))
                rates.append((k * n / (t1 - t0), n / (t2 - t1)))
        out[f"K={k}"] = {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
            "member_steps_per_second": statistics.median(r[0] for r in rates),
            "one_model_steps_per_second": statistics.median(r[1] for r in rates),
            "device_utilization_percent": busy,
        }
        del members, trainer
    return out


def memory_table() -> dict:
    """Estimated bytes of one member of each model at paper size, and the K that fit."""
    from lrdynamics.config.schema import schema_defaults
    from lrdynamics.engine.batches import DeviceData

    out, defaults = {}, schema_defaults({"$ref": "#/$defs/run"})
    for label, (model, shape, batch, opt) in PAPER_MODELS.items():
        run = copy.deepcopy(defaults)
        run["model"].update(model)
        if run["model"].get("width") is None and model["name"] in ("mlp", "cnn4"):
            run["model"]["width"] = model.get("width", 256)
        run["training"]["batch_size"] = batch
        run["optimizer"].update({"name": opt, "momentum": 0.9 if opt == "sgd" else 0.0})
        net = initial_model(run["model"], run["training"], shape, 10, torch.float32)
        images, labels = torch.zeros((batch, *shape), dtype=torch.uint8), torch.zeros(batch, dtype=torch.long)
        record = {"images": images, "labels": labels, "mean": [0.0] * shape[0], "std": [1.0] * shape[0]}
        per = estimated_member_bytes(run, net, DeviceData(record, "cpu", torch.float32))
        out[label] = {"member_MB": per / 1e6, "K_24GiB": int(24 * 2**30 // per), "K_80GB": int(80e9 // per)}
    return out


def bench_ensembles(raw_dir: Path, data_dir: Path, quick: bool, device: str = "cpu") -> dict:
    """Every measurement above; ``raw_dir``: where Fashion-MNIST is found, ``data_dir``: a
    scratch folder for the prepared datasets and the jobs' files."""
    fs = _run(data_dir, device, FUNCTION_SPACE)
    demo = _run(data_dir, device, DEMO_MLP)
    for run in (fs, demo):
        if not (Path(run["dataset_dir"]) / "train.pt").exists():
            prepare_dataset(run["dataset_spec"], raw_dir, run["dataset_dir"])
    folder = data_dir / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    if quick:
        fs["training"].update(epochs=0.5, ensemble=8)
        demo["training"].update(epochs=0.25, ensemble=4)
    results = {
        "function_space_run": {k: fs[k] for k in ("model", "optimizer", "schedule", "training", "evaluation")},
        "function_space": separate_vs_ensemble(fs, folder, 2 if quick else 3),
        "demo_mlp": separate_vs_ensemble(demo, folder, 2),
        "startup": startup(fs, folder, 1 if quick else 3),
        "vs_sequential": vs_sequential(fs, (8,) if quick else (8, 32, 128), 5 if quick else 20, 1 if quick else 3),
        "memory": memory_table(),
    }
    if device == "cuda":
        results["cuda"] = {
            name: vs_sequential(
                _run(data_dir, device, {**DEMO_MLP, "model": model, "training": {"batch_size": 128}}),
                (8, 32, 128),
                5 if quick else 20,
                1 if quick else 3,
            )  # fmt: skip
            for name, model in (
                ("cnn4", {"name": "cnn4", "width": 32, "norm": "bn"}),
                ("preresnet32", {"name": "preresnet32", "norm": "bn"}),
            )  # fmt: skip
        }
    print("  ensembles: done", flush=True)
    return results
