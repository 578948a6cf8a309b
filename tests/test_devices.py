"""Device choice: GPU slots on a shared workstation, layout and precision per run."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, resolve, tiny_config
from lrdynamics.config import ConfigError
from lrdynamics.engine.devices import CHANNELS_LAST, channels_last_hazard, claim_slot, gpu_slot, use_channels_last
from lrdynamics.engine.job import train
from lrdynamics.engine.models import build_model
from lrdynamics.engine.quantities import angle_between, chord_angle, unit_direction
from lrdynamics.engine.trainer import Trainer


def test_slots_spread_over_gpus_then_fill_and_then_wait(tmp_path):
    held = [claim_slot(2, 2, tmp_path, timeout_s=0) for _ in range(4)]
    assert [gpu for gpu, _ in held] == [0, 1, 0, 1]  # slot 0 of every GPU first
    assert claim_slot(2, 2, tmp_path, timeout_s=0) is None  # 2 GPUs x 2 jobs: full
    held[1][1].close()  # a job on GPU 1 ends
    gpu, lock = claim_slot(2, 2, tmp_path, timeout_s=0)
    assert gpu == 1
    lock.close()
    for _, f in held:
        f.close()


def test_a_killed_job_frees_its_slot(tmp_path):
    """The kernel drops a flock when its process dies: no stale slot after a SIGKILL."""
    code = (
        "import sys, time; from pathlib import Path; from lrdynamics.engine.devices import claim_slot; "
        f"held = claim_slot(1, 1, Path({str(tmp_path)!r})); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert claim_slot(1, 1, tmp_path, timeout_s=0) is None
    finally:
        proc.kill()
        proc.wait()
    gpu, lock = claim_slot(1, 1, tmp_path, timeout_s=0)
    assert gpu == 0
    lock.close()


def test_cpu_and_slurm_jobs_claim_no_slot(monkeypatch):
    with gpu_slot("cpu", 4) as device:
        assert device == torch.device("cpu")
    if torch.cuda.is_available():  # under SLURM the scheduler's GPU is used as given
        monkeypatch.setitem(os.environ, "SLURM_JOB_ID", "1")
        with gpu_slot("cuda", 4) as device:
            assert device == torch.device("cuda")


def preresnet(width_multiplier):
    return build_model(model_spec("preresnet32", width_multiplier=width_multiplier), (3, 32, 32), 10)


def model_spec(name, **kw):
    return {"name": name, "norm": "bn", "groups": 8, "norm_eps": 1e-5, "freeze_last_layer": True, **kw}


def test_channels_last_choice():
    cpu = torch.device("cpu")
    mlp = build_model(model_spec("mlp", width=8, depth=2), (1, 28, 28), 10)
    full = preresnet(1.0)
    assert use_channels_last("auto", cpu, full) is CHANNELS_LAST["cpu"]
    assert use_channels_last("auto", cpu, mlp) is False  # an MLP has no layout to choose
    assert use_channels_last(True, cpu, full) is True
    assert use_channels_last(False, cpu, full) is False


def test_channels_last_avoids_the_onednn_strided_1x1_bug_on_cpu():
    """Its shortcut convs at 1/4 width have 4 and 8 input channels: channels-last backward
    corrupts the heap there (oneDNN #6035), so auto keeps the default layout and true is refused."""
    narrow, cpu = preresnet(0.25), torch.device("cpu")
    assert "1x1 conv with 4 input channels" in channels_last_hazard(narrow)
    assert channels_last_hazard(preresnet(1.0)) is None
    assert use_channels_last("auto", cpu, narrow) is False
    with pytest.raises(ValueError, match="oneDNN issue #6035"):
        use_channels_last(True, cpu, narrow)


@pytest.mark.parametrize("theta", [1e-5, 1e-4, 1e-3, 0.1])
def test_float32_chord_angle_matches_float64(theta):
    """Training sums per-update angles in the weights' float32; they must match float64."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300_000, generator=g, dtype=torch.float64)
    d = torch.randn(300_000, generator=g, dtype=torch.float64)
    d -= (d @ a) / (a @ a) * a  # orthogonal to a, so the angle is atan(|d| / |a|)
    b = 1.3 * (a + math.tan(theta) * a.norm() / d.norm() * d)
    exact = float(angle_between(a, b))
    assert exact == pytest.approx(theta, rel=1e-9)
    fast = float(chord_angle(unit_direction(a.float()), unit_direction(b.float())))
    assert fast == pytest.approx(exact, rel=5e-3 if theta < 1e-4 else 1e-4)


def cnn_run(data_dir, **training):
    return next(
        iter(
            resolve(tiny_config(data_dir, model={"name": "cnn4", "width": 4}, training={"epochs": 1, **training}))[
                "runs"
            ]["tiny"].values()
        )
    )


def test_channels_last_is_the_same_training_up_to_rounding(synth_data_dir, tmp_path):
    runs = {cl: cnn_run(synth_data_dir, channels_last=cl) for cl in (True, False)}
    out = {cl: train(run, tmp_path / f"cl{cl}.nc", threads=1) for cl, run in runs.items()}
    assert out[True].attrs["channels_last"] == 1 and out[False].attrs["channels_last"] == 0
    conv = next(m for m in Trainer(runs[True]).model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(out[True].train_loss.values, out[False].train_loss.values, rtol=1e-3)


def test_bfloat16_autocast_trains(synth_data_dir, tmp_path):
    ds = train(cnn_run(synth_data_dir, autocast="bfloat16"), tmp_path / "bf16.nc", threads=1)
    assert ds.attrs["status"] == "completed"
    assert np.all(np.isfinite(ds.train_loss.values))
    assert ds.train_loss.values[-1] < ds.train_loss.values[0]


@pytest.mark.parametrize("training", [{"autocast": "bfloat16"}, {"tf32": True}])
def test_reduced_precision_refused_in_exactness_experiments(synth_data_dir, training):
    config = tiny_config(
        synth_data_dir,
        evaluation={"logit_samples": 10},
        training=training,
        grid={"schedule.wd_as_exp_lr": [False, True], "training.perturb_init": [False, True]},
    )
    config["figures"]["explr_equivalence"] = {"experiments": ["tiny"]}
    with pytest.raises(ConfigError, match="exactness needs float32"):
        resolve(config)
