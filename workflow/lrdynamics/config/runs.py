"""Resolution of a config into runs, each one point of an experiment's grid.

A run's settings are, in order of precedence: one point of the experiment's ``grid``,
the experiment's own keys, ``run_defaults``, the schema's defaults. Every resolved run is
validated again, resolved (adam's beta1, the scaling rule) and checked (``checks``); its
name is its grid point. ``load_config`` does it all for a raw config.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import yaml

import lrdynamics.engine.contract as contract
from lrdynamics.config.checks import (
    check_datasets,
    check_figure_experiments,
    check_figure_references,
    check_gd_run,
    check_run,
)
from lrdynamics.config.rehearsal import from_command_line, rehearse
from lrdynamics.config.schema import (
    ConfigError,
    config_error,
    deep_merge,
    figure_schema,
    load_schema,
    resolve_ref,
    schema_defaults,
    validate,
)
from lrdynamics.engine.adaptive import DEFAULT_BETA1, is_adaptive, sqrt_scaling_rule
from lrdynamics.engine.contract import GD_KIND, RESERVED_NAMES
from lrdynamics.engine.facts import ARCHITECTURES


def grid_aliases(keys) -> dict[str, str]:
    """Short names of grid keys: the last dotted part, unless two keys share it or it
    is a name the run file uses already (``engine.contract.RESERVED_NAMES``); then the
    dashed full key."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {
        k: (a if last.count(a) == 1 and a not in RESERVED_NAMES else k.replace(".", "-")) for k, a in zip(keys, last)
    }


def _set_dotted(run: dict, key: str, value) -> None:
    *head, tail = key.split(".")
    node = run
    for part in head:
        node = node[part]
    node[tail] = copy.deepcopy(value)


def resolve_optimizer(run: dict) -> None:
    """Fill beta1: adam's where null (0.9); rmsprop's is always 0 (so one experiment can
    grid over optimizer.name with adam's beta1 set); sgd's stays as given (unused)."""
    opt = run["optimizer"]
    if opt["name"] == "rmsprop":
        opt["beta1"] = 0.0
    elif opt["beta1"] is None and is_adaptive(opt):
        opt["beta1"] = DEFAULT_BETA1[opt["name"]]


def apply_scaling_rule(run: dict) -> None:
    """Resolve schedule.scaling_rule: schedule.lr becomes the LR of this batch size and the
    configured one is kept as schedule.reference_lr (so the rule is applied exactly once).

    For adam/rmsprop the sqrt rule is the full square-root rule (``engine.adaptive.sqrt_scaling_rule``):
    the betas and eps change too, the configured ones kept as optimizer.reference_*.
    Raises ValueError when a scaled beta leaves [0, 1).
    """
    sched, opt, batch = run["schedule"], run["optimizer"], run["training"]["batch_size"]
    ratio = batch / sched["reference_batch_size"]
    sched["reference_lr"] = sched["lr"]
    if sched["scaling_rule"] == "sqrt" and is_adaptive(opt):
        scaled = sqrt_scaling_rule(sched["lr"], opt["beta1"], opt["beta2"], opt["eps"], ratio)
        for key in ("beta1", "beta2", "eps"):
            opt[f"reference_{key}"] = opt[key]
            opt[key] = scaled[key]
        sched["lr"] = scaled["lr"]
        return
    factor = {"none": 1.0, "linear": ratio, "sqrt": ratio**0.5}[sched["scaling_rule"]]
    sched["lr"] = sched["lr"] * factor


def _known_keys(run_schema: dict) -> set[str]:
    """Dotted keys of a run schema: its top-level keys and one level of nested objects."""
    keys = set()
    for section, sub in run_schema["properties"].items():
        nested = resolve_ref(sub).get("properties")
        keys.update({f"{section}.{key}" for key in nested} if nested else {section})
    return keys


def _grid_runs(config: dict, section: str, name: str, base: dict, run_def: str, resolve) -> dict[str, dict]:
    """The runs of one grid experiment of ``config[section]``: each grid point set on a copy
    of ``base``, validated against ``$defs/<run_def>``, then ``resolve(run, where)`` (the
    kind's own resolution and checks), then named and given the run metadata."""
    exp = config[section][name]
    grid = exp.get("grid", {})
    known = _known_keys(load_schema()["$defs"][run_def])
    unknown = [k for k in grid if k not in known]
    if unknown:
        allowed = ", ".join(sorted(known))
        raise config_error([f"{section}.{name}.grid: unknown run key(s) {', '.join(unknown)}; allowed keys: {allowed}"])
    aliases = grid_aliases(list(grid))
    runs = {}
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        run = copy.deepcopy(base)
        for key, value in point.items():
            _set_dotted(run, key, value)
        run_name = contract.run_name({aliases[k]: v for k, v in point.items()})
        where = f"{section}.{name}" + (f" (run {run_name})" if point else "")
        validate(run, {"$ref": f"#/$defs/{run_def}"}, prefix=where)
        resolve(run, where)
        if run_name in runs:
            raise ConfigError(f"{section}.{name}.grid: two grid points give the run name {run_name!r}")
        ds_name = run["dataset"]
        run.update(
            experiment=name,
            run=run_name,
            references=exp.get("references", ""),
            device=config["device"],
            dataset_spec={**config["datasets"][ds_name], "name": ds_name},
            dataset_dir=str(Path(config["data_dir"]) / ds_name),
            hyperparameters={aliases[k]: v for k, v in point.items()},
        )
        runs[run_name] = run
    if run_def == "run":
        _check_ensembles(runs, f"{section}.{name}", aliases)
        for run in runs.values():  # K = 1: today's run, with today's config_json
            contract.drop_ensemble_of_one(run)
    return runs


def _check_ensembles(runs: dict[str, dict], where: str, aliases: dict[str, str]) -> None:
    """Seed ensembles: members named like the runs of a grid over training.seed, and no seed
    trained twice for runs whose other grid keys agree (the ensemble keys and the seed aside)."""
    problems, seen = [], {}
    sized = [run for run in runs.values() if run["training"]["ensemble"] > 1]
    if sized and aliases.get("training.seed", contract.SEED_DIM) != contract.SEED_DIM:
        problems.append(
            f"{where}.grid: another grid key ends in '.seed', so the members of training.ensemble would not be "
            "named seed=<n>; rename the experiment's grid"
        )
    for run in runs.values():
        tr = run["training"]
        if tr["ensemble"] > 1 and tr["channels_last"] is True:
            problems.append(
                f"{where} (run {run['run']}).training.channels_last: an ensemble trains in PyTorch's default "
                "layout (its batches are 5-D under vmap); use auto or false"
            )
        if tr["ensemble_chunk"] is not None and tr["ensemble_chunk"] > tr["ensemble"]:
            problems.append(
                f"{where} (run {run['run']}).training.ensemble_chunk: {tr['ensemble_chunk']} is more than "
                f"training.ensemble ({tr['ensemble']})"
            )
        members_keys = [aliases.get(f"training.{k}") for k in ("seed", "ensemble", "ensemble_chunk")]
        others = {k: v for k, v in run["hyperparameters"].items() if k not in members_keys}
        key = json.dumps(others, sort_keys=True, default=str)
        for seed in contract.member_seeds(run):
            if (key, seed) in seen:
                problems.append(
                    f"{where}.grid: runs {seen[key, seed]!r} and {run['run']!r} both train seed {seed} "
                    f"(training.ensemble: K trains seeds seed .. seed+K-1; space the grid's seeds K apart)"
                )
                break
            seen[key, seed] = run["run"]
    if problems:
        raise config_error(problems)


def gd_experiment_runs(config: dict, name: str) -> dict[str, dict]:
    """The resolved runs of one full-batch GD experiment (``gd_experiments``), by run name."""
    run_schema = load_schema()["$defs"]["gd_run"]
    exp = config["gd_experiments"][name]
    base = deep_merge(schema_defaults(run_schema), {k: v for k, v in exp.items() if k in run_schema["properties"]})
    runs = _grid_runs(
        config, "gd_experiments", name, base, "gd_run", lambda run, where: check_gd_run(run, config, where)
    )
    for run in runs.values():
        run["kind"] = GD_KIND  # not a schema key: set after validation
    return runs


def experiment_runs(config: dict, name: str) -> dict[str, dict]:
    """The resolved runs of one experiment, by run name (config already validated)."""
    run_schema = load_schema()["$defs"]["run"]
    exp = config["experiments"][name]
    base = deep_merge(schema_defaults(run_schema), config.get("run_defaults", {}))
    base = deep_merge(base, {k: exp[k] for k in run_schema["properties"] if k in exp})

    def resolve(run, where):
        arch = ARCHITECTURES.get(run["model"].get("name"))
        if run["model"].get("width") is None and arch is not None and arch.default_width is not None:
            run["model"]["width"] = arch.default_width
        resolve_optimizer(run)
        try:
            apply_scaling_rule(run)
        except ValueError as err:
            raise config_error([f"{where}.schedule.scaling_rule: {err}"]) from None
        check_run(run, config, where)

    return _grid_runs(config, "experiments", name, base, "run", resolve)


def load_config(config: dict) -> dict:
    """Validate a raw config (as Snakemake reads it) and fill every default.

    Returns the completed config with an extra key ``runs``:
    ``{experiment: {run_name: resolved_run}}``. Raises ConfigError.
    """
    schema = load_schema()
    if "rehearsal" in config:
        config = {**config, "rehearsal": from_command_line(config["rehearsal"])}
    validate(config, schema)
    full = deep_merge(schema_defaults(schema), config)
    full["datasets"] = {
        k: deep_merge(schema_defaults(schema["$defs"]["dataset"]), v) for k, v in config["datasets"].items()
    }
    check_datasets(full)
    full["figures"] = {
        fig: deep_merge(schema_defaults(figure_schema(fig)), spec) for fig, spec in full["figures"].items()
    }
    both = sorted(set(full["experiments"]) & set(full["gd_experiments"]))
    if both:
        raise config_error(
            [f"gd_experiments: {', '.join(both)} also named in experiments (both write results/runs/<experiment>/)"]
        )
    check_figure_references(full)
    full["runs"] = {name: experiment_runs(full, name) for name in full["experiments"]}
    full["runs"].update({name: gd_experiment_runs(full, name) for name in full["gd_experiments"]})
    check_figure_experiments(full)
    full["results_dir"], full["prepared_dir"] = "results", full["data_dir"]
    rehearse(full)  # (no-op unless the config sets rehearsal)
    check_figure_experiments(full)
    return full


def load_config_file(path) -> dict:
    with open(path) as f:
        return load_config(yaml.safe_load(f))


def engine_settings(config: dict) -> dict:
    """``jobs_per_gpu`` and ``checkpoint`` of a raw (validated) config, defaults filled.

    How a job uses its GPU and how often it saves resume state change no result, so the
    training script reads them here rather than as rule params, which would rerun
    finished runs whenever they change.
    """
    props = load_schema()["properties"]
    return {
        "jobs_per_gpu": config.get("jobs_per_gpu", props["jobs_per_gpu"]["default"]),
        "checkpoint": deep_merge(schema_defaults(props["checkpoint"]), config.get("checkpoint", {})),
    }
