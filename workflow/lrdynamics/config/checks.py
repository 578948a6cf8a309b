"""Semantic checks that a schema cannot express, run before any job starts: datasets
against their native sizes, each resolved run against the engine's facts (architectures,
schedules, optimizers), each figure's experiments against what the figure needs (its
``check`` in the study catalog). Every problem names its key path."""

from __future__ import annotations

from lrdynamics.config.schema import ConfigError, config_error
from lrdynamics.engine.adaptive import is_adaptive
from lrdynamics.engine.facts import ARCHITECTURES, DATASET_SOURCES, channel_counts
from lrdynamics.engine.schedules import (
    MILESTONE_SCHEDULES,
    alpha_root,
    base_wd,
    milestone_steps,
    steps_per_epoch,
    to_steps,
    total_steps,
)
from lrdynamics.studies import FIGURES, figure_experiments


def _raise(problems: list[str]) -> None:
    if problems:
        raise config_error(problems)


def check_datasets(config: dict) -> None:
    """Subsets no larger than the source's native splits."""
    for name, ds in config["datasets"].items():
        source = DATASET_SOURCES[ds["source"]]
        for split, n in (("train", source.n_train), ("test", source.n_test)):
            if ds[f"{split}_subset"] is not None and ds[f"{split}_subset"] > n:
                raise config_error(
                    [
                        f"datasets.{name}.{split}_subset: {ds[f'{split}_subset']} is more than the {n} {split} "
                        f"images of {ds['source']} (null: all)"
                    ]
                )


def _dataset_problems(run: dict, config: dict, where: str) -> list[str]:
    if run.get("dataset") in config["datasets"]:
        return []
    return [
        f"{where}.dataset: {run.get('dataset')!r} is not a dataset of `datasets`; "
        f"allowed values: {', '.join(config['datasets'])}"
    ]


def check_run(run: dict, config: dict, where: str) -> None:
    """Semantic checks of one resolved SGD run."""
    problems = _dataset_problems(run, config, where)
    if "name" not in run["model"]:
        problems.append(f"{where}.model.name: missing; allowed values: {', '.join(ARCHITECTURES)}")
    _raise(problems)

    ds = config["datasets"][run["dataset"]]
    source = DATASET_SOURCES[ds["source"]]
    n_train = ds.get("train_subset") or source.n_train
    side = ds.get("resize") or source.side
    model, tr, sched = run["model"], run["training"], run["schedule"]
    arch = ARCHITECTURES[model["name"]]
    if side < arch.min_side:
        problems.append(
            f"{where}.model.name: {model['name']} {arch.why_min_side} and needs images of at least "
            f"{arch.min_side} pixels; dataset {run['dataset']!r} has {side} (set its resize: {arch.min_side})"
        )
    fractional = [c for c in channel_counts(model) if c != int(c) or c < 1]
    if fractional:
        problems.append(
            f"{where}.model.width_multiplier: {model['width_multiplier']} gives channel counts "
            f"{fractional}; every count must be a whole number >= 1"
        )
    elif model["norm"] == "gn":
        bad = [c for c in channel_counts(model) if c % model["groups"]]
        if bad:
            problems.append(f"{where}.model.groups: {model['groups']} does not divide the channel counts {bad}")
    try:
        spe = steps_per_epoch(n_train, tr["batch_size"], tr["drop_last"])
    except ValueError as err:
        raise config_error([f"{where}.training: {err}"]) from None
    n_steps = total_steps(tr["epochs"], spe)
    problems += _check_schedule(sched, n_steps, spe, tr["epochs"], where)
    if run["optimizer"]["svag"] > 1 and run["optimizer"]["momentum"] != 0:
        problems.append(
            f"{where}.optimizer.svag: {run['optimizer']['svag']} needs optimizer.momentum: 0 "
            f"(SVAG simulates the SDE of plain SGD), got momentum {run['optimizer']['momentum']}"
        )
    problems += _check_optimizer(run, n_steps, spe, where)
    if run["gradient_noise"]["estimator"] == "per_example" and model["norm"] == "bn" and model["name"] == "mlp":
        problems.append(
            f"{where}.gradient_noise.estimator: per_example takes single-example gradients in train mode, which a "
            "BatchNorm1d layer cannot normalize (one value per feature); use a conv net, or norm gn/ln"
        )
    if sched["name"] == "exponential" or sched["wd_as_exp_lr"]:
        momentum = run["optimizer"]["momentum"]
        lr, wd = sched["lr"], base_wd(sched, momentum)
        if sched["name"] == "piecewise":  # the root of the first piece
            lr, wd = lr * (sched["lr_factors"] or [1.0])[0], wd * (sched["wd_factors"] or [1.0])[0]
        try:
            alpha_root(lr, wd, momentum)
        except ValueError as err:
            problems.append(f"{where}.schedule: {err}")
    _raise(problems)


def _check_schedule(sched: dict, n_steps: int, spe: int, epochs: float, where: str) -> list[str]:
    """Milestones increasing, inside the run, only where the schedule takes them; piecewise
    factors one per piece, only with the piecewise schedule."""
    problems = []
    if sched["name"] in MILESTONE_SCHEDULES:
        steps = milestone_steps(sched, spe)
        if any(b <= a for a, b in zip(steps, steps[1:])):
            problems.append(f"{where}.schedule.milestones: must be increasing, got {sched['milestones']}")
        late = [m for m, s in zip(sched["milestones"], steps) if s >= n_steps]
        if late:
            problems.append(
                f"{where}.schedule.milestones: {late} ({sched['unit']}) lie at or past the end of "
                f"training ({epochs} epochs = {n_steps} steps)"
            )
    elif sched["milestones"]:
        problems.append(
            f"{where}.schedule.milestones: only the {', '.join(MILESTONE_SCHEDULES)} schedules take milestones"
        )
    n_pieces = len(sched["milestones"]) + 1
    for key in ("lr_factors", "wd_factors"):
        if sched[key] and sched["name"] != "piecewise":
            problems.append(f"{where}.schedule.{key}: only the piecewise schedule takes {key}")
        elif sched[key] and len(sched[key]) != n_pieces:
            problems.append(
                f"{where}.schedule.{key}: {len(sched[key])} factors for {len(sched['milestones'])} milestones; "
                f"give one per piece ({n_pieces}), or [] for none"
            )
    return problems


def _check_optimizer(run: dict, n_steps: int, steps_in_epoch: int, where: str) -> list[str]:
    """What an optimizer, its scaling rule and a warm-up rule out."""
    opt, sched, problems = run["optimizer"], run["schedule"], []
    if is_adaptive(opt):
        name = opt["name"]
        if opt["momentum"] != 0:
            problems.append(f"{where}.optimizer.momentum: {name} takes no momentum (its first moment is beta1)")
        if sched["name"] == "exponential" or sched["wd_as_exp_lr"]:
            problems.append(
                f"{where}.schedule: the exponential LR and wd_as_exp_lr are identities of SGD; not with {name}"
            )
    if sched["warmup"]:
        if sched["name"] == "exponential":
            problems.append(f"{where}.schedule.warmup: not with the exponential schedule (its LR is the Exp LR)")
        if to_steps(sched["warmup"], sched["unit"], steps_in_epoch) >= n_steps:
            problems.append(f"{where}.schedule.warmup: {sched['warmup']} {sched['unit']}(s) is the whole run or more")
    if sched["scaling_rule"] != "none" and sched["unit"] == "step" and (sched["milestones"] or sched["warmup"]):
        problems.append(
            f"{where}.schedule.unit: a scaling_rule keeps the number of epochs, so milestones and warm-up "
            "must be in epochs (unit: epoch)"
        )
    return problems


def check_gd_run(run: dict, config: dict, where: str) -> None:
    """Semantic checks of one resolved full-batch GD run."""
    _raise(_dataset_problems(run, config, where))
    ds, problems = config["datasets"][run["dataset"]], []
    n_train = ds.get("train_subset") or DATASET_SOURCES[ds["source"]].n_train
    if run["examples"] > n_train:
        problems.append(
            f"{where}.examples: {run['examples']} is more than the {n_train} training images of the dataset"
        )
    if (run["lr"] is None) == (run["lr_multiple"] is None):
        problems.append(f"{where}: set exactly one of lr and lr_multiple")
    norms = run["model"]["layer_norms"]
    if norms is not None and len(norms) != run["model"]["depth"] + 1:
        problems.append(
            f"{where}.model.layer_norms: {len(norms)} values for {run['model']['depth'] + 1} weight layers (depth + 1)"
        )
    _raise(problems)


def check_figure_references(config: dict) -> None:
    """Every experiment a figure names exists, in the section its figure reads."""
    for fig, spec in config["figures"].items():
        key = "experiment" if "experiment" in spec else "experiments"
        section = FIGURES[fig].section
        for i, name in enumerate(figure_experiments(spec)):
            if name not in config[section]:
                where = f"figures.{fig}.{key}" + (f"[{i}]" if key == "experiments" else "")
                raise config_error(
                    [f"{where}: {name!r} is not in {section}; allowed values: {', '.join(config[section]) or '(none)'}"]
                )


def check_figure_experiments(config: dict) -> None:
    """Each figure's experiments satisfy its ``check`` (runs already resolved)."""
    for fig, spec in config["figures"].items():
        check = FIGURES[fig].check
        for name in figure_experiments(spec) if check else []:
            problems = check(config[FIGURES[fig].section][name], list(config["runs"][name].values()))
            if problems:
                raise config_error([f"experiments.{name} (read by figures.{fig}): " + "; ".join(problems)])


__all__ = ["ConfigError", "check_datasets", "check_figure_experiments", "check_figure_references", "check_gd_run",
           "check_run"]  # fmt: skip
