"""Seed ensembles (training.ensemble): each member is the run of its seed alone.

Exactness in float64 (every model family, momentum SGD, SVAG, Adam, augmentation and
gradient noise), the float32 gap against the one-ulp chaos floor, a member that diverges
while the others go on, chunks, resume, and ensemble files read like the runs of a grid
over training.seed (combine_experiment, an analysis).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import xarray as xr
from test_resume import Crash, crash_after_saves, load

from conftest import resolve, tiny_config
from lrdynamics.config import ConfigError
from lrdynamics.engine.checkpoint import resume_path
from lrdynamics.engine.combine import RUN_COST_ATTRS, experiment_dataset
from lrdynamics.engine.contract import member_run, member_seeds, run_config_json
from lrdynamics.engine.ensemble import EnsembleTrainer, Members
from lrdynamics.engine.job import train
from lrdynamics.engine.models import weight_layers
from lrdynamics.engine.runfile import check_contract, ensemble_members, is_ensemble, open_runs
from lrdynamics.engine.trainer import Trainer
from lrdynamics.studies.intrinsic_lr.equilibrium import equilibrium_analysis

# 600 synthetic images, B = 50: 12 updates per epoch; 5 epochs = 60 updates (>= 50).
BASE = {
    "training": {"epochs": 5, "dtype": "float64", "ensemble": 3},
    "evaluation": {"every": 2.5, "unit": "epoch", "logit_samples": 20},
}


def experiment(**overrides) -> dict:
    exp = copy.deepcopy(BASE)
    for section, keys in overrides.items():
        exp[section] = {**exp.get(section, {}), **keys} if isinstance(keys, dict) else keys
    return exp


def ensemble_run(data_dir, **overrides) -> dict:
    return next(iter(resolve(tiny_config(data_dir, **experiment(**overrides)))["runs"]["tiny"].values()))


def fit_members(run: dict) -> Members:
    """The members trained in this process (their final weights kept)."""
    trainer = EnsembleTrainer(run, threads=1)
    members = Members(run, trainer.seeds, trainer.device, trainer.train, trainer.test, trainer.n_classes)
    members.train_loop(None, None)
    return members


def relative_gap(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))
    return float(torch.linalg.vector_norm((a - b).double()) / torch.linalg.vector_norm(b.double()))


def member_gaps(run: dict, min_updates: int = 50) -> list[tuple[float, float]]:
    """Per member: (weights gap, logits gap) against the single run of its seed."""
    members = fit_members(run)
    gaps = []
    for k, seed in enumerate(members.seeds):
        single = Trainer(member_run(run, seed), threads=1)
        single.fit()
        weights = max(
            relative_gap(members.params[name][k].detach(), p.detach())
            for name, p in weight_layers(single.model).items()
        )
        logits = relative_gap(members.recorders[k].rows["test_logits"][-1], single.recorder.rows["test_logits"][-1])
        assert members.timeline.n_updates >= min_updates and len(single.recorder.rows["step"]) >= 2
        gaps.append((weights, max(logits, record_gap(members.recorders[k], single.recorder))))
    return gaps


def record_gap(member, single) -> float:
    """The largest relative gap between a member's recorded rows (evaluations, noise) and its
    run's; a value recorded by one and not the other (NaN) is an infinite gap."""
    worst = 0.0
    for rows, other in ((member.rows, single.rows), (member.noise_rows, single.noise_rows)):
        assert rows.keys() == other.keys()
        for name in rows:
            a, b = (np.asarray(r[name], dtype=float) for r in (rows, other))
            assert a.shape == b.shape, name
            if np.isnan(a).any() or np.isnan(b).any():
                assert (np.isnan(a) == np.isnan(b)).all(), name
                a, b = np.nan_to_num(a), np.nan_to_num(b)
            if a.size and np.abs(b).max() > 0:
                worst = max(worst, relative_gap(a, b))
    return worst


@pytest.mark.parametrize(
    "overrides",
    [
        {
            "model": {"name": "mlp", "norm": "bn"},
            "optimizer": {"momentum": 0.9},
            "evaluation": {"per_decade": 8, "prediction_samples": 30, "direction_anchor": 2.0},
            "gradient_noise": {"every": 2.5, "batches": 3},
        },
        {"model": {"name": "cnn4", "width": 4, "norm": "gn", "groups": 2}, "optimizer": {"momentum": 0.9}},
        {  # 51 updates of batch 10: a deep BN net at a tenth of the cost
            "model": {"name": "preresnet32", "width_multiplier": 0.25, "norm": "bn"},
            "training": {"epochs": 0.85, "batch_size": 10, "ensemble": 2},
            "evaluation": {"every": 0.5, "bn_recalibration_samples": 40},
        },
        {"optimizer": {"momentum": 0.0, "svag": 2}, "training": {"crop_padding": 2, "flip": True, "epochs": 2.5}},
        {"optimizer": {"name": "adam", "momentum": 0.0}, "gradient_noise": {"every": 2.5, "batches": 3}},
        {"optimizer": {"name": "rmsprop", "momentum": 0.0, "svag": 2}, "training": {"epochs": 2.5}},
    ],
    ids=["mlp-bn-momentum", "cnn4-gn", "preresnet32-bn", "svag2-crop-flip", "adam-noise", "rmsprop-svag2"],
)
def test_each_member_is_the_run_of_its_seed_in_float64(synth_data_dir, overrides):
    run = ensemble_run(synth_data_dir, **overrides)
    for weights, logits in member_gaps(run):
        assert weights < 1e-9 and logits < 1e-9


@pytest.fixture(scope="module")
def data_32px(synth_data_dir):
    """The synthetic images at 32 px (VGG16 halves them five times), as dataset synth32."""
    from lrdynamics.engine.data import prepare_dataset

    config = tiny_config(synth_data_dir)
    config["datasets"]["synth32"] = {**config["datasets"]["synth"], "resize": 32}
    prepare_dataset(resolve(config)["datasets"]["synth32"], synth_data_dir, synth_data_dir / "synth32")
    return synth_data_dir


@pytest.mark.parametrize(
    "model",
    [{"name": "resnet56", "width_multiplier": 0.25, "norm": "bn"}, {"name": "vgg16", "width_multiplier": 0.125}],
    ids=["resnet56", "vgg16"],
)
def test_every_architecture_trains_as_an_ensemble(data_32px, model):
    """The other two nets of the engine, 12 updates (their cost), members against runs:
    within 1e-9, or within the run's own float64 chaos floor where that is larger (a deep
    net at a quarter width: a twin started one ulp away was 3e-7 off after 12 updates at B = 25)."""
    config = tiny_config(data_32px, **experiment(model=model, training={"epochs": 0.2, "batch_size": 10, "ensemble": 2},
                                                 evaluation={"every": 0.1}))  # fmt: skip
    config["datasets"]["synth32"] = {**config["datasets"]["synth"], "resize": 32}
    config["experiments"]["tiny"]["dataset"] = "synth32"
    run = next(iter(resolve(config)["runs"]["tiny"].values()))
    for seed, (_, logits) in zip(member_seeds(run), member_gaps(run, min_updates=12)):
        if logits < 1e-9:
            continue
        single, twin = (Trainer(member_run(run, seed) | {"training": {**member_run(run, seed)["training"],
                        "perturb_init": p}}, threads=1) for p in (False, True))  # fmt: skip
        single.fit()
        twin.fit()
        floor = relative_gap(twin.recorder.rows["test_logits"][-1], single.recorder.rows["test_logits"][-1])
        assert logits < floor, (seed, logits, floor)


def test_float32_members_stay_within_the_chaos_floor(synth_data_dir):
    """Early in training (12 updates) a float32 member is as close to its single run as a
    twin started one ulp away is: the members differ from single runs by rounding only."""
    run = ensemble_run(synth_data_dir, training={"dtype": "float32", "epochs": 1, "ensemble": 2},
                       evaluation={"every": 1})  # fmt: skip
    members = fit_members(run)
    for k, seed in enumerate(members.seeds):
        single, twin = (Trainer(member_run(run, seed) | {"training": {**member_run(run, seed)["training"],
                        "perturb_init": p}}, threads=1) for p in (False, True))  # fmt: skip
        single.fit()
        twin.fit()
        gap = relative_gap(members.recorders[k].rows["test_logits"][-1], single.recorder.rows["test_logits"][-1])
        floor = relative_gap(twin.recorder.rows["test_logits"][-1], single.recorder.rows["test_logits"][-1])
        assert 0 < floor < 1e-3
        assert gap <= floor


def test_a_diverging_member_is_recorded_diverged_and_the_others_go_on(synth_data_dir, tmp_path):
    run = ensemble_run(synth_data_dir)
    trainer = EnsembleTrainer(run, threads=1)
    members = Members(run, trainer.seeds, trainer.device, trainer.train, trainer.test, trainer.n_classes)
    first_layer, original, calls = members.layers[0], members.optimizer.step, []

    def step(lrs, wds):  # member 1's weights become NaN in its 30th update (index 29)
        original(lrs, wds)
        calls.append(1)
        if len(calls) == 30:
            with torch.no_grad():
                first_layer[1].fill_(math.nan)

    members.optimizer.step = step
    members.train_loop(None, None)
    assert [s["status"] for s in members.status] == ["completed", "diverged", "completed"]
    assert members.status[1]["diverged_update"] == 29 and members.status[1]["diverged_step"] == 29
    assert members.recorders[1].rows["step"] == [0]  # a single run records the steps <= 29 only
    assert members.recorders[0].rows["step"] == [0, 30, 60]
    # the others are untouched: equal to their own runs
    for k in (0, 2):
        single = Trainer(member_run(run, members.seeds[k]), threads=1)
        single.fit()
        assert (
            relative_gap(members.recorders[k].rows["test_logits"][-1], single.recorder.rows["test_logits"][-1]) < 1e-9
        )


def test_all_members_diverging_writes_a_diverged_file_split_like_single_runs(synth_data_dir, tmp_path):
    run = ensemble_run(synth_data_dir, schedule={"lr": 1e12}, model={"norm": "none", "freeze_last_layer": False},
                       training={"dtype": "float32"})  # fmt: skip
    ds = train(run, tmp_path / "ens.nc", threads=1)
    assert ds.attrs["status"] == "diverged" and ds.attrs["members_diverged"] == 3
    assert check_contract(ds) == []
    members = open_runs([tmp_path / "ens.nc"])
    for m, seed in zip(members, (0, 1, 2)):
        single = train(member_run(run, seed), tmp_path / f"s{seed}.nc", threads=1)
        assert m.attrs["status"] == single.attrs["status"] == "diverged"
        assert m.attrs["diverged_update"] == single.attrs["diverged_update"]
        assert list(m.step.values) == list(single.step.values)


def test_chunks_give_the_same_members(synth_data_dir, tmp_path):
    run = ensemble_run(synth_data_dir)
    whole = train(run, tmp_path / "whole.nc", threads=1)
    chunked_run = copy.deepcopy(run)
    chunked_run["training"]["ensemble_chunk"] = 2
    chunked = train(chunked_run, tmp_path / "chunked.nc", threads=1)
    assert chunked.attrs["ensemble_chunk"] == 2 and whole.attrs["ensemble_chunk"] == 3
    for name in whole.data_vars:
        if whole[name].dtype.kind == "f":
            np.testing.assert_allclose(chunked[name].values, whole[name].values, rtol=1e-10, atol=1e-13)
        else:
            assert (chunked[name].values == whole[name].values).all()


@pytest.mark.parametrize("chunk", [None, 2], ids=["one-chunk", "two-chunks"])
def test_crash_and_rerun_of_an_ensemble_is_the_same_ensemble(synth_data_dir, tmp_path, monkeypatch, chunk):
    run = ensemble_run(synth_data_dir, training={"crop_padding": 2, "flip": True, "ensemble_chunk": chunk},
                       gradient_noise={"every": 1, "batches": 3})  # fmt: skip
    whole = train(run, tmp_path / "whole.nc", threads=1)
    out = tmp_path / "cut.nc"
    with monkeypatch.context() as m:
        crash_after_saves(m, 4)  # with two chunks: inside the second
        with pytest.raises(Crash):
            train(run, out, threads=1, checkpoint_every_updates=13)
    assert not out.exists() and resume_path(out).exists()
    resumed = train(run, out, threads=1, checkpoint_every_updates=13)
    xr.testing.assert_equal(resumed, whole)
    xr.testing.assert_equal(load(out), load(tmp_path / "whole.nc"))


def test_an_ensemble_file_reads_like_the_runs_of_a_seed_grid(synth_data_dir, tmp_path):
    """combine_experiment and the equilibrium analysis give the same result from an
    ensemble's file as from separate seed runs (values equal to float tolerance)."""
    histories = {"hist_a": {"lr": 0.1}, "hist_b": {"lr": 0.3}}
    results = {}
    for layout in ("ensemble", "separate"):
        runs = {}
        for name, schedule in histories.items():
            extra = {"ensemble": 3} if layout == "ensemble" else {}
            exp = experiment(schedule=schedule, training={"ensemble": 1, **extra},
                             evaluation={"prediction_samples": 50, "logit_samples": 0, "every": 1})  # fmt: skip
            if layout == "separate":
                exp["grid"] = {"training.seed": [0, 1, 2]}
            config = tiny_config(synth_data_dir, **exp)
            config["experiments"] = {name: config["experiments"]["tiny"]}
            config["figures"] = {"training_curves": {"experiment": name}}
            paths = []
            for run in resolve(config)["runs"][name].values():
                paths.append(tmp_path / layout / name / f"{run['run']}.nc")
                train(run, paths[-1], threads=1)
            runs[name] = open_runs(paths)
        assert [len(v) for v in runs.values()] == [3, 3]
        results[layout] = (
            experiment_dataset(runs["hist_a"]),
            equilibrium_analysis(
                runs["hist_a"] + runs["hist_b"], [], [], metric="total_effective_lr", tolerance=0.1, final_fraction=0.25
            ),  # fmt: skip
        )
    for ens, sep in zip(results["ensemble"], results["separate"]):
        assert dict(ens.sizes) == dict(sep.sizes), (dict(ens.sizes), dict(sep.sizes))
        assert set(ens.variables) == set(sep.variables), set(ens.variables) ^ set(sep.variables)
        for name in sep.variables:
            if name in RUN_COST_ATTRS:
                continue
            if sep[name].dtype.kind == "f":
                np.testing.assert_allclose(ens[name].values, sep[name].values, rtol=1e-8, atol=1e-12, err_msg=name)
            else:
                assert (ens[name].values == sep[name].values).all(), name
    combined = results["ensemble"][0]
    assert list(combined["run"].values) == ["seed=0", "seed=1", "seed=2"]
    assert json.loads(str(combined["config_json"].values[1]))["training"]["seed"] == 1


def test_ensemble_file_contract(synth_data_dir, tmp_path):
    run = ensemble_run(synth_data_dir, training={"ensemble": 2, "seed": 4})
    ds = train(run, tmp_path / "ens.nc", threads=1)
    assert is_ensemble(ds) and check_contract(ds) == []
    assert list(ds["seed"].values) == [4, 5] and ds.attrs["ensemble_size"] == 2
    assert list(ds["member_status"].values) == ["completed", "completed"]
    assert json.loads(ds.attrs["config_json"]) == json.loads(json.dumps(run))
    first, second = ensemble_members(ds)
    assert first.attrs["run"] == "seed=4" and second.attrs["run"] == "seed=5"
    assert "ensemble_size" not in first.attrs and "member_status" not in first.data_vars
    assert json.loads(second.attrs["config_json"])["training"]["seed"] == 5


# --- the config -------------------------------------------------------------------------------


def test_ensemble_of_one_is_todays_run(synth_data_dir):
    plain = resolve(tiny_config(synth_data_dir, training={"epochs": 1}))["runs"]["tiny"]
    one = resolve(tiny_config(synth_data_dir, training={"epochs": 1, "ensemble": 1}))["runs"]["tiny"]
    assert list(one) == list(plain) == ["run"]
    assert run_config_json(one["run"]) == run_config_json(plain["run"])
    assert "ensemble" not in one["run"]["training"]


def test_ensembles_that_would_repeat_a_seed_are_refused(synth_data_dir):
    config = tiny_config(synth_data_dir, training={"ensemble": 4}, grid={"training.seed": [0, 2]})
    with pytest.raises(ConfigError, match="both train seed 2"):
        resolve(config)
    spaced = tiny_config(synth_data_dir, training={"ensemble": 4}, grid={"training.seed": [0, 4]})
    runs = resolve(spaced)["runs"]["tiny"]
    assert list(runs) == ["seed=0", "seed=4"]
    bad_chunk = tiny_config(synth_data_dir, training={"ensemble": 4, "ensemble_chunk": 5})
    with pytest.raises(ConfigError, match="ensemble_chunk: 5 is more than"):
        resolve(bad_chunk)
    with pytest.raises(ConfigError, match="ensemble"):
        resolve(tiny_config(synth_data_dir, training={"ensemble": 0}))
    chunks = tiny_config(synth_data_dir, training={"ensemble": 4}, grid={"training.ensemble_chunk": [1, 2]})
    with pytest.raises(ConfigError, match="both train seed 0"):
        resolve(chunks)
    with pytest.raises(ConfigError, match="default layout"):
        resolve(tiny_config(synth_data_dir, training={"ensemble": 2, "channels_last": True}))


def test_command_line_takes_the_ensemble_key(synth_data_dir, tmp_path):
    """``python -m lrdynamics.train`` trains a run config with training.ensemble into one
    ensemble file; the same config without the key gives today's single run file."""
    import subprocess
    import sys

    run = ensemble_run(synth_data_dir, training={"ensemble": 2, "epochs": 1, "dtype": "float32"})
    for k in (2, 1):
        cfg = tmp_path / f"run{k}.json"
        run["training"]["ensemble"] = k
        cfg.write_text(json.dumps(run))
        out = tmp_path / f"cli{k}.nc"
        proc = subprocess.run([sys.executable, "-m", "lrdynamics.train", str(cfg), str(out), "--threads", "1"],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        ds = load(out)
        assert is_ensemble(ds) == (k == 2)
        assert ("ensemble" in json.loads(ds.attrs["config_json"])["training"]) == (k == 2)


def test_automatic_chunks_fit_half_the_free_memory(synth_data_dir, monkeypatch):
    """ensemble_chunk null: as many members as half the free memory holds (estimated)."""
    from lrdynamics.engine import ensemble

    run = ensemble_run(synth_data_dir, training={"ensemble": 5})
    per_member = {}
    original = ensemble.estimated_member_bytes

    def estimate(*args):
        per_member["bytes"] = original(*args)
        return per_member["bytes"]

    monkeypatch.setattr(ensemble, "estimated_member_bytes", estimate)
    monkeypatch.setattr(ensemble, "free_memory_bytes", lambda device: 4 * per_member["bytes"] + 1)
    trainer = EnsembleTrainer(run, threads=1)
    assert trainer.chunk == 2 and [len(c) for c in trainer.chunks] == [2, 2, 1]
    assert 1e3 < per_member["bytes"] < 1e8
    monkeypatch.setattr(ensemble, "free_memory_bytes", lambda device: 0)
    assert EnsembleTrainer(run, threads=1).chunk == 1  # never less than one member


@pytest.mark.parametrize(
    ("poison", "every", "steps", "noise_steps"),
    [(30, (30, 12), [0, 30], [0, 12, 24]), (45, (60, 60), [0], [0])],
    ids=["noise-rows", "past-a-rescale-check"],
)
def test_a_diverging_member_records_what_its_run_records(synth_data_dir, monkeypatch, poison, every, steps,
                                                         noise_steps):  # fmt: skip
    """Member 1 and the run of its seed get NaN weights in update ``poison`` + 1, between
    checks: both are diverged at that update with the same evaluations and noise rows. In
    the second case the NaN weights pass a rescale check (update 50) before the next check,
    where the single run used to crash."""
    from lrdynamics.engine import ensemble

    run = ensemble_run(synth_data_dir, training={"ensemble": 2, "epochs": 5},
                       evaluation={"every": every[0], "unit": "step"},
                       gradient_noise={"every": every[1], "unit": "step", "batches": 2})  # fmt: skip

    def poisoned(update, member):
        def wrapped(self, index, measure=False):
            out = update(self, index, measure)
            if index == poison:
                with torch.no_grad():
                    if member is None:  # Trainer: its weight layers by name
                        next(iter(self.layers.values())).fill_(math.nan)
                    else:  # Members: the stacked layers, member's slice
                        self.layers[0][member].fill_(math.nan)
            return out

        return wrapped

    monkeypatch.setattr(ensemble.Members, "update", poisoned(ensemble.Members.update, 1))
    trainer = EnsembleTrainer(run, threads=1)
    members = ensemble_members(trainer.dataset(trainer.fit()))
    monkeypatch.setattr(Trainer, "update", poisoned(Trainer.update, None))
    single = Trainer(member_run(run, 1), threads=1)
    alone = single.dataset(single.fit())
    diverged = members[1]
    assert alone.attrs["status"] == diverged.attrs["status"] == "diverged"
    assert alone.attrs["diverged_update"] == diverged.attrs["diverged_update"] == poison + 1
    assert list(alone.step.values) == list(diverged.step.values) == steps
    assert list(alone.noise_step.values) == list(diverged.noise_step.values) == noise_steps
    assert members[0].attrs["status"] == "completed" and members[0].sizes["step"] == len(range(0, 61, every[0]))


def test_resume_keeps_the_chunks_the_run_started_with(synth_data_dir, tmp_path, monkeypatch):
    """Automatic chunks depend on the free memory at start; a resumed ensemble keeps the
    chunks of its first start (else seeds would land in the wrong members)."""
    from lrdynamics.engine import ensemble

    run = ensemble_run(synth_data_dir, training={"ensemble": 6})
    whole = train(run, tmp_path / "whole.nc", threads=1)
    per = {}
    original = ensemble.estimated_member_bytes
    monkeypatch.setattr(ensemble, "estimated_member_bytes", lambda *a: per.setdefault("b", original(*a)))
    out = tmp_path / "cut.nc"
    with monkeypatch.context() as m:
        m.setattr(ensemble, "free_memory_bytes", lambda device: 4 * per["b"] + 1)  # chunks of 2
        crash_after_saves(m, 5)  # in the second chunk
        with pytest.raises(Crash):
            train(run, out, threads=1, checkpoint_every_updates=13)
    monkeypatch.setattr(ensemble, "free_memory_bytes", lambda device: 8 * per["b"] + 1)  # 4 would fit now
    resumed = train(run, out, threads=1, checkpoint_every_updates=13)
    assert resumed.attrs["ensemble_chunk"] == 2
    for name in whole.data_vars:
        if whole[name].dtype.kind == "f":
            np.testing.assert_allclose(resumed[name].values, whole[name].values, rtol=1e-10, atol=1e-13)
