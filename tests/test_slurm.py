"""The workflow through a real SLURM (single node on localhost) with profiles/slurm.

Skipped, with the reason, where SLURM cannot start (not root, packages missing); `make
test` installs the packages when it runs as root, as in CI.
"""

import os
import re
import subprocess

import pytest
import xarray as xr
from local_slurm import LocalSlurm, unavailable_reason
from test_workflow import SNAKEMAKE, write_config

from conftest import REPO, tiny_config, write_fake_fashion_mnist

REASON = unavailable_reason()
if REASON and os.environ.get("LRDYNAMICS_REQUIRE_SLURM") == "1":  # CI: a skip would hide it
    raise RuntimeError(f"LRDYNAMICS_REQUIRE_SLURM=1 but a local SLURM cannot start: {REASON}")
pytestmark = [pytest.mark.workflow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"), cpus=max(2, os.cpu_count() or 2), memory_mb=16000)
    cluster.start()
    yield cluster
    cluster.stop()


def run_snakemake(workdir, *args, limit=420):
    """Snakemake bounded by `timeout -s INT` (a hung run ignores SIGTERM)."""
    command = ["timeout", "-s", "INT", "-k", "20", str(limit), *SNAKEMAKE, "--directory", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def small_workflow(workdir):
    """Synthetic data, 2 SGD runs, 1 full-batch GD run, a figure and the combined files."""
    write_fake_fashion_mnist(workdir / "resources" / "raw" / "fashion_mnist")
    config = tiny_config("resources", grid={"training.seed": [0, 1]})
    config["gd_experiments"] = {
        "gd": {"dataset": "synth", "examples": 100, "model": {"width": 16}, "steps": 20, "lr_multiple": 0.5}
    }
    return write_config(workdir, config)


def scheduler_jobs():
    """Every job the local SLURM knows of (MinJobAge keeps finished ones): field dicts."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, timeout=30).stdout
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if "JobId=" in line]


def test_the_workflow_through_real_slurm_equals_a_local_run(tmp_path, slurm):
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    for workdir in (local, cluster):
        workdir.mkdir()
    proc = run_snakemake(local, "--cores", "2", "--configfile", str(small_workflow(local)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    before = {job["JobId"] for job in scheduler_jobs()}
    proc = run_snakemake(
        cluster,
        "--profile", str(REPO / "profiles" / "slurm"),
        "--configfile", str(small_workflow(cluster)),
        # no accounting database here: the plugin polls squeue, and soon
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",
        "--jobs", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    # Training jobs went through sbatch with the profile's settings; cheap rules did not.
    jobs = [job for job in scheduler_jobs() if job["JobId"] not in before]
    rules = sorted(re.match(r"rule_(train_gd|train)", job.get("Comment", "")).group(1) for job in jobs)
    assert rules == ["train", "train", "train_gd"], [job.get("Comment") for job in jobs]
    for job in jobs:
        assert job["JobState"] == "COMPLETED", job
        assert job["Requeue"] == "1" and job["TimeLimit"] == "12:00:00", job
        assert job["MinMemoryCPU"] == "4000M", job
    slurm_logs = list((cluster / "results" / "logs" / "slurm").rglob("*.log"))
    assert len(slurm_logs) == 3, slurm_logs

    # The same numbers as the local run: every run file, and the combined experiments.
    outputs = sorted(p.relative_to(local) for p in (local / "results").rglob("*.nc"))
    assert len(outputs) == 3 + 2 + 1, outputs  # 3 runs, tiny.nc and gd.nc, and claims.nc
    for rel in outputs:
        with xr.open_dataset(local / rel) as a, xr.open_dataset(cluster / rel) as b:
            timings = [v for v in a.data_vars if re.search(r"(_time_s|steps_per_second)$", v)]  # (combined)
            xr.testing.assert_equal(a.drop_vars(timings), b.drop_vars(timings))
            assert a.attrs.get("status") == b.attrs.get("status")
    assert (cluster / "results" / "figures" / "training_curves.png").stat().st_size > 20_000
