"""Bad files, tried systematically: each gives one clear message naming the thing.

The bad configs are the table BAD_CONFIGS of test_config.py (checked before any job
starts, when Snakemake loads the config); this is the table of bad files and folders.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from conftest import REPO, resolve, tiny_config, write_fake_fashion_mnist
from lrdynamics.engine.data import DatasetError, load_prepared, prepare_dataset, read_raw
from lrdynamics.engine.job import train
from lrdynamics.engine.runfile import RunFileError, open_runs


def prepared(tmp_path) -> Path:
    data_dir = tmp_path / "data"
    write_fake_fashion_mnist(data_dir / "raw" / "fashion_mnist", n_train=100, n_test=20)
    spec = resolve(tiny_config(data_dir))["datasets"]["synth"]
    prepare_dataset(spec, data_dir, data_dir / "synth")
    return data_dir / "synth" / "train.pt"


def truncated_prepared(tmp_path):
    path = prepared(tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    return lambda: load_prepared(path)


def tampered_prepared(tmp_path):
    path = prepared(tmp_path)
    record = torch.load(path, weights_only=True)
    record["images"][0, 0, 0, 0] ^= 1  # one pixel changed, the recorded SHA-256 kept
    torch.save(record, path)
    return lambda: load_prepared(path)


def missing_prepared(tmp_path):
    return lambda: load_prepared(tmp_path / "nowhere" / "train.pt")


def missing_raw(tmp_path, monkeypatch):
    monkeypatch.setattr("lrdynamics.engine.data.DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    return lambda: read_raw("fashion_mnist", tmp_path / "empty")


def truncated_raw(tmp_path, monkeypatch):
    monkeypatch.setattr("lrdynamics.engine.data.DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    folder = write_fake_fashion_mnist(tmp_path / "raw" / "fashion_mnist", n_train=50, n_test=10)
    gz = folder / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:200])
    return lambda: read_raw("fashion_mnist", tmp_path)


def foreign_netcdf(tmp_path):
    path = tmp_path / "theirs.nc"
    xr.Dataset({"temperature": ("time", np.arange(3.0))}).to_netcdf(path)
    return lambda: open_runs([path])


def text_as_netcdf(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_text("not a netCDF file\n")
    return lambda: open_runs([path])


def missing_run_file(tmp_path):
    return lambda: open_runs([tmp_path / "results" / "runs" / "x" / "gone.nc"])


def run_without_dataset(tmp_path):
    run = next(iter(resolve(tiny_config(tmp_path / "data"))["runs"]["tiny"].values()))
    return lambda: train(run, tmp_path / "out.nc", threads=1)


# (what is wrong, set-up returning the failing call, error type, substrings of the message)
BAD_FILES = [
    ("truncated prepared dataset", truncated_prepared, DatasetError, ["train.pt", "unreadable", "delete it"]),
    ("prepared dataset with a wrong checksum", tampered_prepared, DatasetError, ["train.pt", "checksum mismatch"]),
    ("prepared dataset missing", missing_prepared, DatasetError, ["train.pt", "missing", "prepare_dataset"]),
    ("raw dataset missing", missing_raw, DatasetError, ["fashion_mnist", "not found"]),
    ("truncated raw IDX file", truncated_raw, DatasetError, ["train-images-idx3-ubyte.gz"]),
    (
        "a netCDF that is not ours",
        foreign_netcdf,
        RunFileError,
        ["theirs.nc", "not an lrdynamics run file", "missing global attribute"],
    ),
    ("a text file named .nc", text_as_netcdf, RunFileError, ["notes.nc", "not a readable netCDF run file"]),
    ("a run file that does not exist", missing_run_file, RunFileError, ["gone.nc"]),
    ("training before its dataset is prepared", run_without_dataset, DatasetError, ["synth", "missing"]),
]


@pytest.mark.parametrize("what,setup,error,expected", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_is_one_clear_error(tmp_path, monkeypatch, what, setup, error, expected):
    params = setup.__code__.co_varnames[: setup.__code__.co_argcount]
    call = setup(tmp_path, monkeypatch) if "monkeypatch" in params else setup(tmp_path)
    with pytest.raises(error) as err:
        call()
    for text in expected:
        assert text in str(err.value), f"{what}: {text!r} not in:\n{err.value}"


def test_command_line_rejects_a_run_config_that_is_not_one(tmp_path):
    bad = tmp_path / "run.json"
    for content, expected in (("{not json", "Expecting property name"), ('{"lr": 0.1}', "not a resolved run config")):
        bad.write_text(content)
        proc = subprocess.run(
            [sys.executable, "-m", "lrdynamics.train", str(bad), str(tmp_path / "o.nc")],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert proc.returncode == 2 and expected in proc.stderr and str(bad) in proc.stderr


def test_command_line_fills_run_keys_added_after_the_file_was_written(synth_data_dir, tmp_path):
    run = next(iter(resolve(tiny_config(synth_data_dir, training={"epochs": 1}))["runs"]["tiny"].values()))
    for key in ("tf32", "autocast", "channels_last"):  # keys newer than some run files
        del run["training"][key]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(run))
    proc = subprocess.run(
        [sys.executable, "-m", "lrdynamics.train", str(path), str(tmp_path / "o.nc"), "--threads", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with xr.open_dataset(tmp_path / "o.nc") as ds:
        assert ds.attrs["status"] == "completed"
