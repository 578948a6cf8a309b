"""The Snakemake chain end to end on a tiny config, and the dry runs users rely on."""

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import xarray as xr
import yaml

from conftest import REPO, test_config, tiny_config, write_fake_fashion_mnist
from lrdynamics.engine.combine import combine_runs
from lrdynamics.engine.data import DEBIAN_FASHION_MNIST
from lrdynamics.engine.runfile import check_contract, open_runs
from lrdynamics.studies import CLAIMS, FIGURES, ledger

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


REAL = DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz"


@pytest.mark.workflow
@pytest.mark.parametrize(
    "data",
    ["synthetic", pytest.param("real", marks=pytest.mark.skipif(not REAL.exists(), reason="no Debian Fashion-MNIST"))],
)
def test_demo_chain_end_to_end(tmp_path, data):
    data_dir = tmp_path / "resources"
    if data == "synthetic":  # the test config as a user runs it: every figure, through its rules
        write_fake_fashion_mnist(data_dir / "raw" / "fashion_mnist")
        cfg = REPO / "config" / "test.yaml"
    else:  # the real images: the tiny experiment only
        config = test_config()
        config["datasets"]["synth"].update(train_subset=500, test_subset=200)
        config["experiments"] = {"tiny": config["experiments"]["tiny"]}
        config["figures"] = {"training_curves": config["figures"]["training_curves"]}
        del config["gd_experiments"]
        cfg = write_config(tmp_path, config)
    proc = snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    assert (tmp_path / "resources" / "synth" / "train.pt").is_file()
    runs = sorted((tmp_path / "results" / "runs" / "tiny").glob("*.nc"))  # (not those of eq)
    assert [r.name for r in runs] == sorted(f"wd={w}_seed={s}.nc" for w in ("0.0", "0.0005") for s in (0, 1))
    datasets = open_runs(runs)
    for ds in datasets:
        assert check_contract(ds) == [], ds.attrs["run"]
        assert ds.attrs["status"] == "completed"
    assert dict(combine_runs(datasets).sizes)["wd"] == 2
    if data == "synthetic":
        assert set(test_config()["figures"]) == set(FIGURES)  # the test config draws every figure
        for name in FIGURES:
            assert (tmp_path / "results" / "figures" / f"{name}.png").stat().st_size > 20_000
        with xr.open_dataset(tmp_path / "results" / "analysis" / "explr_equivalence.nc") as analysis:
            assert bool(analysis.within_chaos_criterion.all())
        with xr.open_dataset(tmp_path / "results" / "analysis" / "eos.nc") as eos:
            assert eos.sizes["run"] == 3 and set(eos.experiment.values) == {"gd_eos", "gd_reg"}
            diverged = eos.outcome.values == 0  # lr 1e4 blows up, recorded as a result
            assert list(eos.lr.values[diverged]) == [1.0e4] and (eos.diverged_step.values[diverged] >= 0).all()
            assert (eos.initial_sharpness > 0).all()
        for toy in ("catapult_toy", "balancing_toy"):
            with xr.open_dataset(tmp_path / "results" / "analysis" / f"{toy}.nc") as ds:
                assert ds.attrs["Conventions"] == "CF-1.10" and ds.sizes["loss_function"] == 3
        with xr.open_dataset(tmp_path / "results" / "analysis" / "svag.nc") as svag:
            assert list(svag.l.values) == [1, 2] and float(svag.test_accuracy_distance.sel(l=2)) == 0
        with xr.open_dataset(tmp_path / "results" / "analysis" / "adaptive.nc") as adaptive:
            assert list(adaptive.kappa.values) == [1.0, 4.0] and list(adaptive.l.values) == [1, 2]
            assert adaptive.final_test_accuracy.notnull().all() and (adaptive.gradient_noise_trace > 0).any()
            assert float(adaptive.learning_rate.sel(optimizer="adam", scaling_rule="sqrt", kappa=4.0)) == 2.0e-3
        with xr.open_dataset(tmp_path / "results" / "analysis" / "equilibrium.nc") as eq:
            # hist_a: one ensemble file of 2 seeds; hist_b: 2 seed runs; scaling: 4 ensembles of 2
            assert list(eq.schedule.values) == ["hist_a", "hist_b"] and eq.sizes["run_id"] == 12
            assert sorted(p.name for p in (tmp_path / "results" / "runs" / "hist_a").glob("*.nc")) == ["run.nc"]
            assert list(eq.intrinsic_lr.values) == pytest.approx([0.01, 0.04])
        with xr.open_dataset(tmp_path / "results" / "analysis" / "lsr.nc") as lsr:
            assert list(lsr.batch_size.values) == [25, 100]
            assert list(lsr.learning_rate.sel(experiment="lsr").values) == [0.05, 0.2]
            assert (lsr.gradient_noise > 0).all() and float(lsr.predicted_critical_batch_size.sel(experiment="lsr")) > 0
        # The claims ledger: every claim of the catalog, measured in this config, each verdict
        # but confirmed with its reason; the decay pair compared in function space.
        table = ledger.read(tmp_path / "results" / "claims.csv")
        assert list(table["id"]) == list(CLAIMS) and set(table["verdict"]) <= set(ledger.VERDICTS)
        assert (table["reason"][table["verdict"] != ledger.CONFIRMED] != "").all()
        assert (table["measured_in"] == "test").all()
        with xr.open_dataset(tmp_path / "results" / "analysis" / "decay_equilibrium.nc") as dec:
            assert list(dec.comparison.values) == ["dec"] and dec.sizes["step"] > 2
    # One dataset per experiment: the whole grid at once, the diverged run kept as NaN.
    with xr.open_dataset(tmp_path / "results" / "tiny.nc") as tiny:
        assert dict(tiny.status.sizes) == {"wd": 2, "seed": 2} and (tiny.status == "completed").all()
        assert tiny.train_loss.dims == ("seed", "wd", "step") and tiny.train_loss.notnull().all()
    if data == "synthetic":
        with xr.open_dataset(tmp_path / "results" / "gd_reg.nc") as reg:
            assert list(reg.status.values) == ["completed", "diverged"]
            blown = reg.train_loss.sel(lr=1.0e4)
            assert int(reg.diverged_step.sel(lr=1.0e4)) == int(blown.notnull().sum()) - 1
            assert blown.isnull().any() and reg.train_loss.sel(lr=0.01).notnull().all()

        # The report: every figure, each with its caption and the config that made it.
        proc = snakemake(tmp_path, "--report", "report.zip", "--configfile", str(cfg))
        assert proc.returncode == 0, proc.stderr[-3000:]
        with zipfile.ZipFile(tmp_path / "report.zip") as report:
            names = report.namelist()
            html = report.read("report/report.html").decode()
        figures = sorted(p.name for p in (tmp_path / "results" / "figures").glob("*.png"))
        assert sorted(n.rsplit("/", 1)[1] for n in names if n.endswith(".png")) == figures
        assert html.count("The configuration that made it") == len(figures)
        assert any(n.endswith("claims.html") for n in names) and "Claims ledger" in html
        for category in ("Exponential LR (Li &amp; Arora 2020)", "Large-LR implicit biases"):
            assert category in html or category.replace("&amp;", "&") in html

    png = tmp_path / "results" / "figures" / "training_curves.png"
    assert png.stat().st_size > 20_000 and (tmp_path / "results" / "figures" / "training_curves.pdf").is_file()
    log = (tmp_path / "results" / "logs" / "train" / "tiny" / "wd=0.0_seed=0.log").read_text()
    assert "steps/s" in log and "wrote" in log

    # Rerun one figure by naming its file: the runs are reused, not retrained.
    stamps = {r: r.stat().st_mtime_ns for r in runs}
    png.unlink()
    time.sleep(0.01)
    # (the target first: --configfile takes several values)
    proc = snakemake(tmp_path, "results/figures/training_curves.png", "--cores", "1", "--configfile", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert png.is_file()
    assert {r: r.stat().st_mtime_ns for r in runs} == stamps


@pytest.mark.workflow
def test_a_failed_dataset_names_where_it_looked(tmp_path):
    cfg = write_config(tmp_path, tiny_config("resources"))
    # An empty data dir, and the Debian copy hidden by pointing at a dataset the machine lacks.
    config = yaml.safe_load(cfg.read_text())
    config["datasets"]["synth"]["source"] = "cifar10"
    config["run_defaults"]["model"] = {"name": "mlp", "width": 8, "depth": 1}
    cfg.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--cores", "1", "--configfile", str(cfg))
    assert proc.returncode != 0
    log = (tmp_path / "results" / "logs" / "prepare_dataset" / "synth.log").read_text()
    assert "cifar-10-python.tar.gz" in log and "Looked in" in log


def test_unknown_key_on_the_command_line_is_named(tmp_path):
    proc = snakemake(REPO, "-n", "--config", "no_such_key=1")
    assert proc.returncode != 0
    assert "no_such_key" in proc.stderr + proc.stdout


def test_paper_dag_builds_in_seconds():
    start = time.perf_counter()
    proc = snakemake(REPO, "-n", "--quiet", "rules", "--configfile", "config/paper.yaml", timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "prepare_dataset" in out and "train" in out
    assert elapsed < 60, elapsed  # generous: a broken config resolution takes minutes


def test_unwritable_results_folder_stops_before_any_job(tmp_path):
    """Part of the bad-input table (tests/test_bad_input.py): one message, no DAG built."""
    (tmp_path / "results").write_text("a file where the results folder should be")
    config = write_config(tmp_path, tiny_config(tmp_path / "data"))
    proc = snakemake(tmp_path, "-n", "--configfile", str(config))
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "lrdynamics: cannot write to results/" in message, message[-2000:]
    assert "Job stats" not in message


def test_slurm_profile_is_valid_for_the_slurm_executor():
    """The plugin parses every key of profiles/slurm (a dry run submits nothing)."""
    proc = snakemake(REPO, "-n", "--profile", "profiles/slurm", "--configfile", "config/paper.yaml", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train" in proc.stdout + proc.stderr
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    extra = profile["default-resources"]["slurm_extra"]
    assert "--signal=USR1@" in extra and not any(flag in extra for flag in ("--gres", "--gpus"))
    for rule in ("train", "train_gd"):  # GPUs come from the rules' `gpu` resource
        assert {"cpus_per_gpu", "mem_mb_per_cpu"} <= set(profile["set-resources"][rule])
