"""Config validation: every bad input names the key path and what would be valid."""

import copy

import numpy as np
import pytest
import yaml

from conftest import REPO, resolve, tiny_config
from lrdynamics.config import (
    ConfigError,
    format_value,
    grid_aliases,
    load_config_file,
    load_schema,
    schema_defaults,
)
from lrdynamics.engine.contract import RESERVED_NAMES
from lrdynamics.engine.schedules import build_schedule, steps_per_epoch, total_steps


def test_shipped_configs_validate():
    demo = load_config_file(REPO / "config" / "config.yaml")
    paper = load_config_file(REPO / "config" / "paper.yaml")
    assert demo["runs"]["baseline"]
    run = next(iter(paper["runs"]["baseline"].values()))
    assert run["model"]["name"] == "preresnet32"
    assert run["schedule"]["milestones"] == [80, 120] and run["training"]["epochs"] == 160
    assert run["dataset_spec"]["source"] == "cifar10"


def _paper_schedule(run: dict):
    """The per-update LR and WD of a resolved paper run, and its steps per epoch."""
    n_train = {"mnist": 60000, "cifar10": 50000}[run["dataset"]]
    spe = steps_per_epoch(n_train, run["training"]["batch_size"], run["training"]["drop_last"])
    n_steps = total_steps(run["training"]["epochs"], spe)
    return build_schedule(run["schedule"], spe, n_steps, momentum=run["optimizer"]["momentum"]), spe


def test_paper_equilibrium_experiments_are_the_papers():
    """MNIST: the 4-layer normalized CNN, 3 histories with equal intrinsic LR from epoch 81 on,
    500 seeds each, predictions on the whole test set. CIFAR-10: 5 histories that differ over
    epochs 0-500 and are identical from then on, LR decayed and WD removed at epoch 1000."""
    paper = load_config_file(REPO / "config" / "paper.yaml")
    assert paper["figures"]["intrinsic_lr_equilibrium"]["experiments"] == ["eq_hist_a", "eq_hist_b", "eq_hist_c"]
    histories, seeds = [], []
    for name in ("eq_hist_a", "eq_hist_b", "eq_hist_c"):
        (run,) = paper["runs"][name].values()
        assert run["dataset_spec"]["source"] == "mnist" and run["dataset_spec"]["test_subset"] is None
        assert run["model"]["name"] == "cnn4" and run["model"]["norm"] == "bn" and run["model"]["freeze_last_layer"]
        assert run["optimizer"]["momentum"] == 0.0
        assert run["training"]["ensemble"] == 500
        assert run["evaluation"]["prediction_samples"] == 10000 and run["evaluation"]["test_samples"] is None
        seeds.append(set(range(run["training"]["seed"], run["training"]["seed"] + 500)))
        histories.append(_paper_schedule(run))
    assert not (seeds[0] & seeds[1] or seeds[0] & seeds[2] or seeds[1] & seeds[2])  # independent samples
    (a, spe), (b, _), (c, _) = histories
    assert spe == 468  # 60,000 // 128: drop_last
    meet = 80 * spe  # the first update of epoch 81
    for s in (a, b, c):
        np.testing.assert_allclose(s.lr[meet:] * s.wd[meet:], a.lr[meet:] * a.wd[meet:], rtol=1e-12)
    for s in (b, c):
        assert (s.lr[:meet] * s.wd[:meet] > 5 * a.lr[:meet] * a.wd[:meet]).all()

    cifar = [_paper_schedule(next(iter(paper["runs"][f"eq_cifar_{k}"].values()))) for k in range(1, 6)]
    spe = cifar[0][1]
    shared, decay = 500 * spe, 1000 * spe
    for s, _ in cifar:
        np.testing.assert_array_equal(s.lr[shared:], cifar[0][0].lr[shared:])
        np.testing.assert_array_equal(s.wd[shared:], cifar[0][0].wd[shared:])
        assert not s.wd[decay:].any() and s.wd[decay - 1] > 0  # WD removed at epoch 1000
        np.testing.assert_allclose(s.lr[decay:], 0.1 * s.lr[decay - 1])
    firsts = {(s.lr[0], s.wd[0]) for s, _ in cifar}
    assert len(firsts) == 5  # five different histories before epoch 500


def test_defaults_fill_every_run_key():
    run = next(iter(resolve(tiny_config("/tmp", schedule={"lr": 0.2}))["runs"]["tiny"].values()))
    assert run["schedule"]["lr"] == 0.2  # experiment overrides run_defaults
    assert run["schedule"]["wd"] == 5.0e-4  # run_defaults override the schema
    assert run["model"]["norm"] == "bn" and run["model"]["freeze_last_layer"] is True  # schema
    assert run["training"]["drop_last"] is False
    assert run["run"] == "run" and run["hyperparameters"] == {}


def test_grid_gives_named_runs_and_hyperparameters():
    cfg = resolve(tiny_config("/tmp", grid={"schedule.lr": [0.1, 0.4], "training.seed": [0, 1, 2]}))
    runs = cfg["runs"]["tiny"]
    assert len(runs) == 6
    assert "lr=0.4_seed=2" in runs
    assert runs["lr=0.4_seed=2"]["hyperparameters"] == {"lr": 0.4, "seed": 2}
    assert runs["lr=0.4_seed=2"]["schedule"]["lr"] == 0.4


def test_grid_aliases_avoid_collisions_and_reserved_names():
    assert grid_aliases(["schedule.lr", "training.seed"]) == {"schedule.lr": "lr", "training.seed": "seed"}
    assert grid_aliases(["model.width", "evaluation.batch_size", "training.batch_size"]) == {
        "model.width": "width",
        "evaluation.batch_size": "evaluation-batch_size",
        "training.batch_size": "training-batch_size",
    }
    assert "weight_decay" in RESERVED_NAMES and "learning_rate" in RESERVED_NAMES


def test_format_value():
    assert format_value(5e-4) == "0.0005"
    assert format_value(1e-5) == "1e-05"
    assert format_value(True) == "true"
    assert format_value([80, 120]) == "80-120"


def test_schema_gives_description_and_default_to_optional_keys():
    """Every leaf key of a run has a description; optional ones a default."""
    run = load_schema()["$defs"]["run"]["properties"]
    for section, sub in run.items():
        if section == "dataset":
            continue
        for key, spec in sub["properties"].items():
            assert "description" in spec, f"{section}.{key}"
            if (section, key) != ("model", "name"):
                assert "default" in spec, f"{section}.{key}"
    defaults = schema_defaults({"$ref": "#/$defs/run"})
    assert defaults["optimizer"] == {
        "name": "sgd",
        "momentum": 0.0,
        "svag": 1,
        "beta1": None,
        "beta2": 0.999,
        "eps": 1e-8,
    }


def _with(config, path, value):
    config = copy.deepcopy(config)
    *head, tail = path
    node = config
    for p in head:
        node = node.setdefault(p, {})
    node[tail] = value
    return config


BASE = tiny_config("/tmp")
# (what is wrong, config, substrings the message must contain)
BAD_CONFIGS = [
    ("unknown top-level key", _with(BASE, ["no_such_key"], 1), ["unknown key no_such_key", "allowed keys"]),
    (
        "unknown nested key",
        _with(BASE, ["run_defaults", "schedule", "lrr"], 0.1),
        ["run_defaults.schedule.lrr", "allowed keys here", "lr"],
    ),
    (
        "unknown key in an experiment",
        _with(BASE, ["experiments", "tiny", "trainig"], {}),
        ["experiments.tiny.trainig"],
    ),
    ("negative LR", _with(BASE, ["run_defaults", "schedule", "lr"], -0.1), ["run_defaults.schedule.lr", "-0.1"]),
    ("zero LR", _with(BASE, ["experiments", "tiny", "schedule"], {"lr": 0}), ["experiments.tiny.schedule.lr"]),
    ("negative weight decay", _with(BASE, ["run_defaults", "schedule", "wd"], -1e-4), ["schedule.wd"]),
    ("momentum 1", _with(BASE, ["run_defaults", "optimizer", "momentum"], 1.0), ["optimizer.momentum"]),
    ("negative momentum", _with(BASE, ["run_defaults", "optimizer", "momentum"], -0.5), ["optimizer.momentum"]),
    ("LR written 1e-4 in YAML", _with(BASE, ["run_defaults", "schedule", "lr"], "1e-4"), ["1.0e-4"]),
    (
        "empty grid",
        _with(BASE, ["experiments", "tiny", "grid"], {"schedule.lr": []}),
        ["experiments.tiny.grid.schedule.lr", "must not be empty"],
    ),
    (
        "unknown grid key",
        _with(BASE, ["experiments", "tiny", "grid"], {"schedule.lrr": [0.1]}),
        ["experiments.tiny.grid", "schedule.lrr", "allowed keys", "schedule.lr"],
    ),
    (
        "bad value inside the grid",
        _with(BASE, ["experiments", "tiny", "grid"], {"schedule.lr": [0.1, -1.0]}),
        ["experiments.tiny (run lr=-1.0)", "schedule.lr"],
    ),
    (
        "unknown model",
        _with(BASE, ["run_defaults", "model", "name"], "resnet9000"),
        ["model.name", "resnet9000", "mlp, cnn4, preresnet32, resnet56, vgg16"],
    ),
    ("unknown norm", _with(BASE, ["run_defaults", "model", "norm"], "batchnorm"), ["model.norm", "bn, gn, ln, none"]),
    (
        "unknown dataset source",
        _with(BASE, ["datasets", "synth", "source"], "svhn"),
        ["datasets.synth.source", "fashion_mnist, mnist, cifar10, cifar100"],
    ),
    (
        "run names a dataset that is not declared",
        _with(BASE, ["run_defaults", "dataset"], "imagenet"),
        ["dataset", "imagenet", "allowed values: synth"],
    ),
    (
        "unknown schedule",
        _with(BASE, ["run_defaults", "schedule", "name"], "warp"),
        ["schedule.name", "constant, step"],
    ),
    (
        "milestones past the end",
        _with(BASE, ["experiments", "tiny", "schedule"], {"name": "step", "milestones": [1, 5]}),
        ["schedule.milestones", "[5]", "past the end"],
    ),
    (
        "decreasing milestones",
        _with(BASE, ["experiments", "tiny", "schedule"], {"name": "step", "milestones": [1.5, 1]}),
        ["schedule.milestones", "increasing"],
    ),
    ("milestones on a constant schedule", _with(BASE, ["run_defaults", "schedule", "milestones"], [1]), ["milestones"]),
    (
        "piecewise factors that do not match the milestones",
        _with(BASE, ["experiments", "tiny", "schedule"], {"name": "piecewise", "milestones": [1], "lr_factors": [1.0]}),
        ["schedule.lr_factors", "1 factors for 1 milestones", "one per piece (2)"],
    ),
    (
        "piecewise factors on a step schedule",
        _with(BASE, ["experiments", "tiny", "schedule"], {"name": "step", "milestones": [1], "wd_factors": [1.0, 0.0]}),
        ["schedule.wd_factors", "only the piecewise schedule"],
    ),
    (
        "a zero LR factor",
        _with(
            BASE, ["experiments", "tiny", "schedule"], {"name": "piecewise", "milestones": [1], "lr_factors": [1, 0]}
        ),
        ["schedule.lr_factors[1]", "0"],
    ),
    (
        "a negative WD factor",
        _with(
            BASE, ["experiments", "tiny", "schedule"], {"name": "piecewise", "milestones": [1], "wd_factors": [1, -1]}
        ),
        ["schedule.wd_factors[1]", "-1"],
    ),
    (
        "the exponential counterpart of a first piece without a root",  # BASE has momentum 0.9
        _with(
            BASE,
            ["experiments", "tiny", "schedule"],
            {
                "name": "piecewise",
                "milestones": [1],
                "lr_factors": [10, 1],
                "wd_factors": [100, 1],
                "wd_as_exp_lr": True,
            },
        ),
        ["experiments.tiny.schedule", "no positive real root for lr=1.0, wd=0.05"],
    ),
    (
        "piecewise milestones past the end",
        _with(BASE, ["experiments", "tiny", "schedule"], {"name": "piecewise", "milestones": [1, 5], "lr_factors": []}),
        ["schedule.milestones", "[5]", "past the end"],
    ),
    ("batch size 0", _with(BASE, ["run_defaults", "training", "batch_size"], 0), ["training.batch_size"]),
    ("epochs not a number", _with(BASE, ["run_defaults", "training", "epochs"], "ten"), ["training.epochs"]),
    ("bad device", _with(BASE, ["device"], "gpu"), ["device", "gpu"]),
    ("no experiments", _with(BASE, ["experiments"], {}), ["experiments", "at least 1"]),
    (
        "figure reads a missing experiment",
        _with(BASE, ["figures", "training_curves", "experiment"], "nope"),
        ["figures.training_curves.experiment", "nope", "tiny"],
    ),
    ("unknown figure", _with(BASE, ["figures", "loss_landscape"], {"experiment": "tiny"}), ["figures.loss_landscape"]),
    ("vgg16 on 28 px images", _with(BASE, ["run_defaults", "model", "name"], "vgg16"), ["vgg16", "resize: 32"]),
    (
        "GroupNorm groups that do not divide the width",
        _with(BASE, ["run_defaults", "model"], {"name": "mlp", "width": 30, "norm": "gn", "groups": 8}),
        ["model.groups", "[30]"],
    ),
    ("bad experiment name", _with(BASE, ["experiments", "a/b"], {}), ["experiments", "a/b"]),
    ("subset too small", _with(BASE, ["datasets", "synth", "train_subset"], 3), ["datasets.synth.train_subset"]),
    ("SVAG l = 0", _with(BASE, ["run_defaults", "optimizer", "svag"], 0), ["optimizer.svag"]),
    (
        "SVAG with momentum",  # BASE has momentum 0.9
        _with(BASE, ["experiments", "tiny", "grid"], {"optimizer.svag": [1, 2]}),
        ["run svag=2", "optimizer.svag", "momentum: 0"],
    ),
    (
        "SVAG figure on an experiment without an l grid",
        _with(BASE, ["figures", "svag_convergence"], {"experiment": "tiny"}),
        ["figures.svag_convergence", "optimizer.svag"],
    ),
    (
        "LSR figure without the noise measurement",
        _with(BASE, ["figures", "lsr_validity"], {"experiments": ["tiny"]}),
        ["experiments.tiny", "figures.lsr_validity", "gradient_noise.every"],
    ),
    (
        "a width multiplier that gives fractional channels",
        _with(
            _with(BASE, ["datasets", "synth", "resize"], 32),
            ["run_defaults", "model"],
            {"name": "vgg16", "width_multiplier": 0.01},
        ),  # fmt: skip
        ["model.width_multiplier", "whole number"],
    ),
    ("unknown scaling rule", _with(BASE, ["run_defaults", "schedule", "scaling_rule"], "cubic"), ["scaling_rule"]),
    ("noise C <= 1", _with(BASE, ["run_defaults", "gradient_noise"], {"threshold_c": 1.0}), ["threshold_c"]),
    ("no GPU slot", _with(BASE, ["jobs_per_gpu"], 0), ["jobs_per_gpu", "0"]),
    ("checkpoint every 0 s", _with(BASE, ["checkpoint"], {"every_seconds": 0}), ["checkpoint.every_seconds"]),
    ("unknown checkpoint key", _with(BASE, ["checkpoint"], {"every": 10}), ["checkpoint.every", "every_updates"]),
    (
        "layout not auto/true/false",
        _with(BASE, ["run_defaults", "training", "channels_last"], "yes"),
        ["training.channels_last", "auto"],
    ),
    (
        "fp16 autocast",
        _with(BASE, ["run_defaults", "training", "autocast"], "float16"),
        ["training.autocast", "bfloat16"],
    ),
]


@pytest.mark.parametrize("what,config,expected", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_is_one_clear_error(what, config, expected):
    with pytest.raises(ConfigError) as err:
        resolve(config)
    for text in expected:
        assert text in str(err.value), f"{what}: {text!r} not in:\n{err.value}"


def test_yaml_reads_1e_minus_4_as_a_string_which_the_schema_rejects(tmp_path):
    raw = yaml.safe_load("lr: 1e-4\nok: 1.0e-4")
    assert raw == {"lr": "1e-4", "ok": 1.0e-4}


def test_figures_default_to_none():
    config = tiny_config("/tmp")
    del config["figures"]
    assert resolve(config)["figures"] == {}
    config["figures"] = {"training_curves": {"experiment": "tiny"}}
    assert list(resolve(config)["figures"]) == ["training_curves"]


def test_scaling_rules_resolve_the_lr_once():
    grid = {"training.batch_size": [32, 128, 512]}
    for rule, expected in (("linear", [0.025, 0.1, 0.4]), ("sqrt", [0.05, 0.1, 0.2]), ("none", [0.1, 0.1, 0.1])):
        config = _with(BASE, ["experiments", "tiny"], {"grid": grid, "schedule": {"scaling_rule": rule}})
        runs = resolve(config)["runs"]["tiny"]
        assert [r["schedule"]["lr"] for r in runs.values()] == pytest.approx(expected), rule
        assert {r["schedule"]["reference_lr"] for r in runs.values()} == {0.1}


def test_fractional_width_multiplier_builds_whole_channels():
    config = _with(_with(BASE, ["datasets", "synth", "resize"], 32), ["run_defaults", "model"], {
        "name": "vgg16", "width_multiplier": 0.125, "norm": "none"})  # fmt: skip
    run = next(iter(resolve(config)["runs"]["tiny"].values()))
    assert run["model"]["width_multiplier"] == 0.125
