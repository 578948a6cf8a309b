"""Resume: a run killed anywhere and rerun until done equals the uninterrupted run.

Runs on the synthetic dataset with crop, flip, gradient-noise measurements and BN (every
generator and buffer of the engine in play). Equality is of every data variable and
coordinate (xarray.testing.assert_equal): the same numbers, bit for bit, not close ones.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import xarray as xr

from conftest import REPO, resolve, tiny_config
from lrdynamics.config import run_config_json
from lrdynamics.engine import job as job_module
from lrdynamics.engine.checkpoint import MAGIC, Checkpointing, resume_path, save_state
from lrdynamics.engine.job import train

EXPERIMENT = {
    "training": {"epochs": 6, "crop_padding": 2, "flip": True},
    "gradient_noise": {"every": 1, "unit": "epoch", "batches": 3},
}


def run_of(data_dir, **overrides) -> dict:
    experiment = {**EXPERIMENT, **overrides}
    if "training" in overrides:
        experiment["training"] = {**EXPERIMENT["training"], **overrides["training"]}
    return next(iter(resolve(tiny_config(data_dir, **experiment))["runs"]["tiny"].values()))


def load(path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


@pytest.fixture(scope="module")
def reference(synth_data_dir, tmp_path_factory):
    """The uninterrupted run (in this process, 1 thread, as the killed subprocesses)."""
    out = tmp_path_factory.mktemp("reference") / "ref.nc"
    train(run_of(synth_data_dir), out, threads=1)
    return load(out)


def long_run(data_dir) -> dict:
    """Long enough (~500 updates) for signals to land inside the update loop."""
    return run_of(data_dir, training={"epochs": 40}, evaluation={"every": 2, "unit": "epoch"})


@pytest.fixture(scope="module")
def long_reference(synth_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "long.nc"
    train(long_run(synth_data_dir), out, threads=1)
    return load(out)


class Crash(Exception):
    pass


def crash_after_saves(monkeypatch, n: int) -> None:
    """Make the n-th save of the resume state the last thing the job does."""
    saves = {"count": 0}
    original = Checkpointing.save

    def save(self, state):
        original(self, state)
        saves["count"] += 1
        if saves["count"] == n:
            raise Crash

    monkeypatch.setattr(Checkpointing, "save", save)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"optimizer": {"momentum": 0.0, "svag": 2}},  # SVAG: two streams
        {"model": {"name": "cnn4", "width": 4}, "schedule": {"wd_as_exp_lr": True}},  # conv, Exp-LR
    ],
    ids=["sgd-momentum", "svag", "cnn-explr"],
)
def test_crash_and_rerun_is_the_same_run(synth_data_dir, tmp_path, monkeypatch, overrides):
    run = run_of(synth_data_dir, **overrides)
    whole = train(run, tmp_path / "whole.nc", threads=1)
    out = tmp_path / "cut.nc"
    with monkeypatch.context() as m:
        crash_after_saves(m, 2)
        with pytest.raises(Crash):
            train(run, out, threads=1, checkpoint_every_updates=17)
    assert not out.exists() and resume_path(out).exists()
    resumed = train(run, out, threads=1, checkpoint_every_updates=17)
    xr.testing.assert_equal(resumed, whole)
    xr.testing.assert_equal(load(out), load(tmp_path / "whole.nc"))
    assert not resume_path(out).exists() and not resume_path(out).parent.exists()  # cleaned up


def test_kill_during_the_final_write_keeps_the_state(synth_data_dir, tmp_path, monkeypatch, reference):
    """The output appears whole or not at all; the state stays until it is written."""
    run, out = run_of(synth_data_dir), tmp_path / "out.nc"

    def dies_while_writing(ds, path):
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(b"CDF\x01 half a file")
        raise Crash

    with monkeypatch.context() as m:
        m.setattr(job_module, "write_atomic", dies_while_writing)
        with pytest.raises(Crash):
            train(run, out, threads=1, checkpoint_every_updates=10)
    assert not out.exists() and resume_path(out).exists()
    train(run, out, threads=1)
    xr.testing.assert_equal(load(out), reference)


@pytest.mark.parametrize(
    "damage",
    ["truncated", "bit flip", "not a state", "empty", "other config"],
)
def test_damaged_or_foreign_state_restarts_from_scratch(synth_data_dir, tmp_path, monkeypatch, caplog, damage):
    run, out = run_of(synth_data_dir), tmp_path / "out.nc"
    with monkeypatch.context() as m:
        crash_after_saves(m, 1)
        with pytest.raises(Crash):
            train(run, out, threads=1, checkpoint_every_updates=30)
    path = resume_path(out)
    data = path.read_bytes()
    if damage == "truncated":  # a kill in the middle of a write that was not atomic
        path.write_bytes(data[: len(data) // 2])
    elif damage == "bit flip":
        path.write_bytes(data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
    elif damage == "not a state":
        path.write_bytes(b"PK\x03\x04 something else")
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a state of the same output name written for other settings
        other = run_of(synth_data_dir, schedule={"lr": 0.05})
        with monkeypatch.context() as m:
            crash_after_saves(m, 1)
            with pytest.raises(Crash):
                train(other, out, threads=1, checkpoint_every_updates=30)
    # a leftover temporary file of an interrupted save is never read
    path.with_name(f".{path.name}.tmp-12345").write_bytes(MAGIC + b"0" * 64 + b"\n" + b"junk")
    with caplog.at_level(logging.WARNING, logger="lrdynamics.engine.checkpoint"):
        resumed = train(run, out, threads=1)
    assert "starting the run from scratch" in caplog.text
    xr.testing.assert_equal(resumed, train(run, tmp_path / "fresh.nc", threads=1))


def test_state_is_written_atomically(tmp_path, monkeypatch):
    """A failure inside save_state leaves the previous state untouched."""
    path = tmp_path / "x.state"
    save_state({"fingerprint": "a", "n": 1}, path)
    before = path.read_bytes()

    def fails(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fails)
    with pytest.raises(OSError):
        save_state({"fingerprint": "a", "n": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.state"]


# --- real processes, real signals ------------------------------------------------------


def start(run_file, out, every=4):
    cmd = [sys.executable, "-m", "lrdynamics.train", str(run_file), str(out), "--threads", "1"]
    cmd += ["--checkpoint-every-updates", str(every)]
    return subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)


def wait_for_training(proc) -> bool:
    """Read the log until the update loop runs; False if the process ended first."""
    for line in proc.stderr:
        if " run tiny/" in line:
            return True
    return False


def test_sigkill_at_random_moments_then_rerun_until_done(synth_data_dir, tmp_path, long_reference):
    """The Done-when of the reliability issue: kill -9 at random points, rerun, same file."""
    run_file, out = tmp_path / "run.json", tmp_path / "out.nc"
    run_file.write_text(run_config_json(long_run(synth_data_dir)))
    rng = random.Random(20261123)
    kills_with_state = 0
    for attempt in range(8):
        proc = start(run_file, out)
        if attempt < 7 and wait_for_training(proc):
            time.sleep(rng.uniform(0.0, 0.8))
            had_state = resume_path(out).exists()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if proc.returncode == -signal.SIGKILL:
                kills_with_state += had_state
                continue
        proc.communicate(timeout=300)
        assert proc.returncode == 0
        break
    assert kills_with_state >= 2, "the kills did not land after a resume state was saved"
    print(f"killed {attempt} times, {kills_with_state} after a resume state was saved")
    assert out.exists() and not resume_path(out).exists()
    xr.testing.assert_equal(load(out), long_reference)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_sigterm_and_slurm_warning_save_state_and_stop(synth_data_dir, tmp_path, long_reference, sig):
    run_file, out = tmp_path / "run.json", tmp_path / "out.nc"
    run_file.write_text(run_config_json(long_run(synth_data_dir)))
    proc = start(run_file, out, every=10_000)  # no cadence save: only the signal's
    assert wait_for_training(proc)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "resume state saved" in err and resume_path(out).exists() and not out.exists()
    rerun = start(run_file, out)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and "resumed at update" in err
    xr.testing.assert_equal(load(out), long_reference)
