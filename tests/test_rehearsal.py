"""Rehearsal mode (``rehearsal``, lrdynamics.config.rehearsal): the paper config's DAG at a
fraction of its length, and its marks. The end-to-end rehearsal of config/paper.yaml (every
experiment and figure, on CIFAR-10 and MNIST files written in the real formats) is marked
``rehearsal``: ``make rehearsal-test`` runs it (``.ci/run`` does, after ``make test``)."""

import copy
import json
import math

import pytest
import xarray as xr
import yaml

from conftest import REPO, write_fake_cifar10, write_fake_mnist
from lrdynamics.config import ConfigError, load_config
from lrdynamics.config.rehearsal import REHEARSAL_KEYS, batch_map
from lrdynamics.config.runs import apply_scaling_rule
from lrdynamics.engine.runfile import check_contract, open_runs
from lrdynamics.engine.schedules import MILESTONE_SCHEDULES, milestone_steps, steps_per_epoch
from lrdynamics.studies import CLAIMS, ledger

PAPER = REPO / "config" / "paper.yaml"
LENGTH = 0.01  # the knobs' checks
E2E_LENGTH = 0.002  # the end-to-end rehearsal (make rehearsal, make rehearsal-test)


def paper(rehearsal: dict | None = None) -> dict:
    raw = yaml.safe_load(PAPER.read_text())
    if rehearsal is not None:
        raw["rehearsal"] = rehearsal
    return raw


@pytest.fixture(scope="module")
def resolved():
    return load_config(paper()), load_config(paper({"length": LENGTH}))


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "rehearsal":
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


def test_rehearsal_knobs_are_the_only_differences_from_the_paper_config(resolved):
    real, rehearsal = resolved
    assert rehearsal["results_dir"] != "results" and real["results_dir"] == "results"
    assert rehearsal["figures"].keys() == real["figures"].keys()
    assert rehearsal["runs"].keys() == real["runs"].keys()
    changed = set()
    for name, runs in real["runs"].items():
        assert rehearsal["runs"][name].keys() == runs.keys(), name  # every run, by the same name
        for run_name, run in runs.items():
            r = rehearsal["runs"][name][run_name]
            factor = r["rehearsal"]["length"]
            assert LENGTH <= factor <= 1
            a, b = flat(run), flat(r)
            assert a.keys() | {"rehearsal", "training.micro_batch_size"} >= b.keys()
            for key in a.keys() | b.keys():
                if a.get(key) == b.get(key):
                    continue
                changed.add(key)
                how = REHEARSAL_KEYS.get(key)
                assert how is not None, f"{name}/{run_name}: {key} changed ({a.get(key)} -> {b.get(key)})"
                if how == "cadence" and key == "sharpness_every":
                    assert b[key] >= max(1, round(a[key] * factor)), key
                elif how == "cadence" and a.get(key) is not None:
                    assert b[key] >= a[key] * factor * (1 - 1e-12), key
                elif how == "length" and key in ("steps", "sharpness_every"):
                    assert b[key] == max(1, round(a[key] * factor)), key
                elif how == "length" and isinstance(a[key], list):
                    assert b[key] == pytest.approx([v * factor for v in a[key]]), key
                elif how == "length":
                    assert b[key] == pytest.approx(a[key] * factor), key
                elif how == "cap" and a.get(key) is not None:
                    assert b[key] <= a[key], key
                elif how == "floor":
                    assert b[key] >= a[key], key
    # the knobs are used: each kind of change happens on the paper config
    assert {"training.epochs", "schedule.milestones", "steps", "training.ensemble", "model.width_multiplier",
            "training.micro_batch_size", "gradient_noise.batches", "examples", "training.batch_size",
            "schedule.lr", "evaluation.every"} <= changed  # fmt: skip
    for name, ds in rehearsal["datasets"].items():
        other = {k: v for k, v in ds.items() if not k.endswith("_subset")}
        assert other == {k: v for k, v in real["datasets"][name].items() if not k.endswith("_subset")}


def test_every_phase_of_every_rehearsed_run_has_an_update(resolved):
    _, rehearsal = resolved
    for runs in rehearsal["runs"].values():
        for run in runs.values():
            if "kind" in run:
                assert run["steps"] >= 1 and run["sharpness_every"] >= 1
                continue
            ds = rehearsal["datasets"][run["dataset"]]
            tr, sched = run["training"], run["schedule"]
            assert ds["train_subset"] >= tr["batch_size"]  # an epoch has a full batch
            spe = steps_per_epoch(ds["train_subset"], tr["batch_size"], tr["drop_last"])
            n = max(1, round(tr["epochs"] * spe))
            cuts = milestone_steps(sched, spe) if sched["name"] in MILESTONE_SCHEDULES else []
            steps = [0, *cuts, n]
            assert all(b > a for a, b in zip(steps, steps[1:])), (run["experiment"], run["run"], steps)


def test_rehearsal_batch_sizes_keep_their_order_and_the_scaling_rule(resolved):
    """Each experiment's batch sizes stay distinct and in order (every grid point a distinct
    run for the batch-size analyses); where their ratios fit under the cap they are kept, and
    the LR, betas and eps are the scaling rule's at the new sizes."""
    real, rehearsal = resolved
    cap = rehearsal["rehearsal"]["batch_size"]
    for name, runs in real["runs"].items():
        pairs = sorted(
            {
                (run["training"]["batch_size"], rehearsal["runs"][name][n]["training"]["batch_size"])
                for n, run in runs.items()
                if "kind" not in run
            }  # fmt: skip
        )
        if not pairs:
            continue
        mapped = [b for _, b in pairs]
        assert mapped == sorted(set(mapped)) and mapped[-1] <= cap, name
        if pairs[0][0] * cap >= pairs[-1][0] and pairs[-1][0] > cap:  # ratios kept
            assert all(b * pairs[-1][0] == a * cap for a, b in pairs), name
        for run_name, run in runs.items():
            r = rehearsal["runs"][name][run_name]
            if "kind" in run:
                assert r["lr"] == run["lr"]
                continue
            redo = copy.deepcopy(r)
            redo["schedule"]["lr"] = redo["schedule"].pop("reference_lr")
            for key in ("beta1", "beta2", "eps"):
                redo["optimizer"][key] = redo["optimizer"].pop(f"reference_{key}", redo["optimizer"][key])
            apply_scaling_rule(redo)
            assert redo["schedule"]["lr"] == r["schedule"]["lr"] and redo["optimizer"] == r["optimizer"]
            kappa = run["training"]["batch_size"] / run["schedule"]["reference_batch_size"]
            if name.startswith("adaptive_scaling"):  # κ kept under every rule, "none" included
                assert r["training"]["batch_size"] / r["schedule"]["reference_batch_size"] == kappa
            if run["schedule"]["scaling_rule"] == "linear" and kappa == int(kappa) and name.startswith("svag"):
                assert r["schedule"]["lr"] == pytest.approx(run["schedule"]["lr"])  # svag_b1024: 6.4 kept


def test_batch_map():
    assert batch_map([256, 512, 1024, 2048, 4096], 32) == {256: 2, 512: 4, 1024: 8, 2048: 16, 4096: 32}
    assert batch_map([2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048], 32) == dict(
        zip([2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048], [1, 2, 3, 4, 5, 6, 8, 11, 16, 23, 32])
    )
    assert batch_map([16, 32], 32) == {16: 16, 32: 32}
    # SVAG's l (rehearsal.svag_updates): SGD's 1..32 at 16, adaptive 1, 2, 4, 8 at l^2 <= 16
    assert batch_map([1, 2, 4, 8, 16, 32], 16) == {1: 1, 2: 2, 4: 3, 8: 5, 16: 9, 32: 16}
    assert batch_map([1, 2, 4, 8], 4) == {1: 1, 2: 2, 4: 3, 8: 4}
    with pytest.raises(ConfigError):
        batch_map(range(1, 10), 4)


@pytest.mark.parametrize(
    "bad",
    [{"length": 0}, {"length": 1.5}, {}, {"length": 0.1, "epochs": 2}, {"length": 0.1, "results_dir": "results"}],
    ids=["zero", "over-one", "no-length", "unknown-key", "results-folder"],
)
def test_bad_rehearsal_settings_are_config_errors(bad):
    with pytest.raises(ConfigError, match="rehearsal"):
        load_config(paper(bad))


def test_a_length_too_short_for_a_phase_is_stretched_until_each_has_an_update():
    raw = paper({"length": 1e-6})
    raw["experiments"] = {"svag": raw["experiments"]["svag"]}
    raw["figures"] = {"svag_convergence": raw["figures"]["svag_convergence"]}
    raw["gd_experiments"] = {}
    config = load_config(copy.deepcopy(raw))  # stretched until each phase has an update
    assert all(r["rehearsal"]["length"] > 1e-6 for r in config["runs"]["svag"].values())


@pytest.mark.rehearsal
def test_paper_config_rehearsal_end_to_end(tmp_path):
    """Every experiment and figure of config/paper.yaml, on CPU, from CIFAR-10 and MNIST
    files in their real formats, read by the production loaders."""
    from test_workflow import snakemake

    real, rehearsal = load_config(paper()), load_config(paper({"length": E2E_LENGTH}))
    data = tmp_path / "resources"
    cifar = rehearsal["datasets"]["cifar10"]
    write_fake_cifar10(data / "cifar-10-python.tar.gz", math.ceil(cifar["train_subset"] / 5) + 4, 160)
    write_fake_mnist(data / "raw" / "mnist", rehearsal["datasets"]["mnist"]["train_subset"] + 88, 160)
    override = {"data_dir": str(data), "device": "cpu", "train_threads": 1, "rehearsal": {"length": E2E_LENGTH}}
    proc = snakemake(
        tmp_path,
        "--cores",
        "2",
        "--configfile",
        str(PAPER),
        "--config",
        *(f"{k}={json.dumps(v)}" for k, v in override.items()),
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = tmp_path / rehearsal["results_dir"]
    assert not (tmp_path / "results").exists()  # nothing where real results go
    assert (data / "rehearsal" / "cifar10" / "train.pt").is_file() and not (data / "cifar10").exists()
    for experiment, runs in real["runs"].items():
        files = sorted((out / "runs" / experiment).glob("*.nc"))
        assert [f.stem for f in files] == sorted(runs), experiment
        for ds in open_runs(files):
            assert check_contract(ds) == [], (experiment, ds.attrs["run"])
            assert json.loads(ds.attrs["rehearsal"])["length"] >= E2E_LENGTH
            assert "rehearsal" in json.loads(ds.attrs["config_json"])
        assert (out / f"{experiment}.nc").is_file()
    for figure in real["figures"]:
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{figure}.{ext}").stat().st_size > 10_000, figure
    for path in (out / "analysis").glob("*.nc"):
        with xr.open_dataset(path) as ds:
            assert ds.attrs["rehearsal"].startswith("REHEARSAL"), path.name
    table = ledger.read(out / "claims.csv")
    assert list(table["id"]) == list(CLAIMS)
    assert set(table["verdict"]) == {"not resolved"} and set(table["measured_in"]) == {"rehearsal"}
