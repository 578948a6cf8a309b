"""Configuration: validation against the JSON schema and resolution into runs.

A run's settings are, in order of precedence: one point of the experiment's ``grid``,
the experiment's own keys, ``run_defaults``, the schema's defaults. Every resolved run is
validated again, and semantic checks that a schema cannot express (milestones past the
end, a grid key that is not a run key, GroupNorm groups that do not divide the widths)
run here too, so a bad config fails before any job starts, naming the key path.

Torch-free: the Snakefile imports this module.
"""

from __future__ import annotations

import copy
import itertools
import json
from functools import cache
from pathlib import Path

import jsonschema
import yaml

from lrdynamics.adaptive import DEFAULT_BETA1, is_adaptive, sqrt_scaling_rule
from lrdynamics.schedules import alpha_root, base_wd, milestone_steps, steps_per_epoch, to_steps, total_steps

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"

# Native sizes of the datasets we know: (train, test, channels, image side, classes).
DATASET_FACTS = {
    "fashion_mnist": (60000, 10000, 1, 28, 10),
    "cifar10": (50000, 10000, 3, 32, 10),
    "cifar100": (50000, 10000, 3, 32, 100),
}
# Names a run file uses for its own dimensions and variables (record.VARIABLES); a grid
# alias equal to one of them is spelled out in full instead (a key "x.step" -> "x-step").
RESERVED_NAMES = frozenset(
    "step epoch layer train_loss train_accuracy test_loss test_accuracy minibatch_loss learning_rate "
    "weight_decay intrinsic_lr weight_norm total_weight_norm effective_lr total_effective_lr angular_update "
    "total_angular_update grad_norm test_logits test_predictions sample class updates_done noise_step noise_epoch "
    "gradient_signal batch_gradient_noise gradient_noise critical_batch_size sharpness sharpness_step eigenvalue "
    "layer_norm hessian_products".split()
)
# Model-specific default of model.width (null in the config).
DEFAULT_WIDTH = {"mlp": 256, "cnn4": 32}
RUN_SECTIONS = ("dataset", "model", "optimizer", "schedule", "training", "gradient_noise", "evaluation")


class ConfigError(ValueError):
    """A configuration problem; the message names the key path and what is valid."""


@cache
def load_schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _key_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _describe(error: jsonschema.ValidationError, prefix: str) -> str:
    path = _key_path([*filter(None, prefix.split(".")), *error.absolute_path])
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = path
        names = ", ".join(f"{where}.{k}" if where != "(top level)" else k for k in extra)
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {names}{hint}"
    if v == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{path}: {error.instance!r} is not allowed; allowed values: {allowed}"
    if v == "type":
        want = error.validator_value
        hint = ""
        if isinstance(error.instance, str) and "number" in str(want) and _is_float(error.instance):
            hint = " (YAML reads 1e-4 as a string: write 1.0e-4)"
        return f"{path}: {error.instance!r} is not of type {want}{hint}"
    if v == "minItems":
        return f"{path}: must not be empty (at least {error.validator_value} item)"
    if v == "minProperties":
        return f"{path}: must have at least {error.validator_value} entry"
    if v == "propertyNames":
        return f"{path}: invalid name {error.instance!r} ({error.message})"
    return f"{path}: {error.message}"


def validate(instance, schema: dict, prefix: str = "") -> None:
    """Validate ``instance``; raise ConfigError listing every problem with its path."""
    root = load_schema()
    full = {**schema, "$defs": root["$defs"]}
    validator = jsonschema.Draft202012Validator(full)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    if errors:
        lines = [_describe(e, prefix) for e in errors]
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(lines))


def _resolve_ref(schema: dict) -> dict:
    root = load_schema()
    while "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def schema_defaults(schema: dict):
    """The default value a schema node gives, filling nested objects recursively."""
    schema = _resolve_ref(schema)
    if "default" in schema:  # an explicit default wins (figures: {} means no figure)
        return copy.deepcopy(schema["default"])
    if schema.get("type") == "object" or "properties" in schema:
        out = {}
        for key, sub in schema.get("properties", {}).items():
            value = schema_defaults(sub)
            if value is not None or "default" in _resolve_ref(sub):
                out[key] = value
        return out
    return None


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` merged in (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def format_value(value) -> str:
    """Compact, file-name-safe text of a hyperparameter value (repr for floats)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(format_value(v) for v in value) or "none"
    return str(value)


def grid_aliases(keys) -> dict[str, str]:
    """Short names of grid keys: the last dotted part, unless two keys share it or it
    is a name the run file uses already (RESERVED_NAMES); then the dashed full key."""
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


def channel_counts(model: dict) -> list[int]:
    """Channel/feature counts that get normalized, for checking GroupNorm groups."""
    name, m = model["name"], model.get("width_multiplier", 1)
    if name == "mlp":
        return [model["width"]]
    if name == "cnn4":
        return [model["width"], 2 * model["width"], 4 * model["width"]]
    if name in ("preresnet32", "resnet56"):
        return [16 * m, 32 * m, 64 * m]
    if name == "vgg16":
        return [64 * m, 128 * m, 256 * m, 512 * m]
    return []


def _check_run(run: dict, config: dict, where: str) -> None:
    """Semantic checks of one resolved run."""
    problems = []
    datasets = config["datasets"]
    if run.get("dataset") not in datasets:
        problems.append(
            f"{where}.dataset: {run.get('dataset')!r} is not a dataset of `datasets`; "
            f"allowed values: {', '.join(datasets)}"
        )
    if "name" not in run["model"]:
        problems.append(f"{where}.model.name: missing; allowed values: mlp, cnn4, preresnet32, resnet56, vgg16")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))

    ds = datasets[run["dataset"]]
    n_train_native, n_test_native, _, side, _ = DATASET_FACTS[ds["source"]]
    n_train = ds.get("train_subset") or n_train_native
    side = ds.get("resize") or side
    model, tr, sched = run["model"], run["training"], run["schedule"]
    if model["name"] == "vgg16" and side < 32:
        problems.append(
            f"{where}.model.name: vgg16 halves the image five times and needs images of "
            f"at least 32 pixels; dataset {run['dataset']!r} has {side} (set its resize: 32)"
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
        raise ConfigError(f"invalid configuration:\n  - {where}.training: {err}") from None
    n_steps = total_steps(tr["epochs"], spe)
    if sched["name"] in ("step", "exponential"):
        steps = milestone_steps(sched, spe)
        if any(b <= a for a, b in zip(steps, steps[1:])):
            problems.append(f"{where}.schedule.milestones: must be increasing, got {sched['milestones']}")
        late = [m for m, s in zip(sched["milestones"], steps) if s >= n_steps]
        if late:
            problems.append(
                f"{where}.schedule.milestones: {late} ({sched['unit']}) lie at or past the end of "
                f"training ({tr['epochs']} epochs = {n_steps} steps)"
            )
    elif sched["milestones"] and sched["name"] != "exponential":
        problems.append(f"{where}.schedule.milestones: only the step and exponential schedules take milestones")
    if run["optimizer"]["svag"] > 1 and run["optimizer"]["momentum"] != 0:
        problems.append(
            f"{where}.optimizer.svag: {run['optimizer']['svag']} needs optimizer.momentum: 0 "
            f"(SVAG simulates the SDE of plain SGD), got momentum {run['optimizer']['momentum']}"
        )
    problems += _check_optimizer(run, n_steps, spe, where)
    if sched["name"] == "exponential" or sched["wd_as_exp_lr"]:
        try:
            alpha_root(sched["lr"], base_wd(sched, run["optimizer"]["momentum"]), run["optimizer"]["momentum"])
        except ValueError as err:
            problems.append(f"{where}.schedule: {err}")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


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

    For adam/rmsprop the sqrt rule is the full square-root rule (``adaptive.sqrt_scaling_rule``):
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


GD_FIGURES = ("edge_of_stability", "regularity", "balancing")


def _known_keys(run_schema: dict) -> set[str]:
    """Dotted keys of a run schema: its top-level keys and one level of nested objects."""
    keys = set()
    for section, sub in run_schema["properties"].items():
        nested = _resolve_ref(sub).get("properties")
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
        raise ConfigError(
            f"invalid configuration:\n  - {section}.{name}.grid: unknown run key(s) "
            f"{', '.join(unknown)}; allowed keys: {', '.join(sorted(known))}"
        )
    aliases = grid_aliases(list(grid))
    runs = {}
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        run = copy.deepcopy(base)
        for key, value in point.items():
            _set_dotted(run, key, value)
        run_name = "_".join(f"{aliases[k]}={format_value(v)}" for k, v in point.items()) or "run"
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
    return runs


def gd_experiment_runs(config: dict, name: str) -> dict[str, dict]:
    """The resolved runs of one full-batch GD experiment (``gd_experiments``), by run name."""
    run_schema = load_schema()["$defs"]["gd_run"]
    exp = config["gd_experiments"][name]
    base = deep_merge(schema_defaults(run_schema), {k: v for k, v in exp.items() if k in run_schema["properties"]})

    def resolve(run, where):
        _check_gd_run(run, config, where)

    runs = _grid_runs(config, "gd_experiments", name, base, "gd_run", resolve)
    for run in runs.values():
        run["kind"] = "full_batch_gd"  # not a schema key: set after validation
    return runs


def _check_gd_run(run: dict, config: dict, where: str) -> None:
    problems = []
    if run["dataset"] not in config["datasets"]:
        raise ConfigError(
            f"invalid configuration:\n  - {where}.dataset: {run['dataset']!r} is not a dataset of `datasets`; "
            f"allowed values: {', '.join(config['datasets'])}"
        )
    ds = config["datasets"][run["dataset"]]
    n_train = ds.get("train_subset") or DATASET_FACTS[ds["source"]][0]
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
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def experiment_runs(config: dict, name: str) -> dict[str, dict]:
    """The resolved runs of one experiment, by run name (config already validated)."""
    schema = load_schema()
    exp = config["experiments"][name]
    base = deep_merge(schema_defaults(schema["$defs"]["run"]), config.get("run_defaults", {}))
    base = deep_merge(base, {k: exp[k] for k in RUN_SECTIONS if k in exp})

    def resolve(run, where):
        if run["model"].get("width") is None and run["model"].get("name") in DEFAULT_WIDTH:
            run["model"]["width"] = DEFAULT_WIDTH[run["model"]["name"]]
        resolve_optimizer(run)
        try:
            apply_scaling_rule(run)
        except ValueError as err:
            raise ConfigError(f"invalid configuration:\n  - {where}.schedule.scaling_rule: {err}") from None
        _check_run(run, config, where)

    return _grid_runs(config, "experiments", name, base, "run", resolve)


def load_config(config: dict) -> dict:
    """Validate a raw config (as Snakemake reads it) and fill every default.

    Returns the completed config with an extra key ``runs``:
    ``{experiment: {run_name: resolved_run}}``. Raises ConfigError.
    """
    schema = load_schema()
    validate(config, schema)
    full = deep_merge(schema_defaults(schema), config)
    full["datasets"] = {
        k: deep_merge(schema_defaults(schema["$defs"]["dataset"]), v) for k, v in config["datasets"].items()
    }
    for name, ds in full["datasets"].items():
        n_train, n_test = DATASET_FACTS[ds["source"]][:2]
        for split, n in (("train", n_train), ("test", n_test)):
            if ds[f"{split}_subset"] is not None and ds[f"{split}_subset"] > n:
                raise ConfigError(
                    f"invalid configuration:\n  - datasets.{name}.{split}_subset: {ds[f'{split}_subset']} is more "
                    f"than the {n} {split} images of {ds['source']} (null: all)"
                )
    figure_schemas = schema["properties"]["figures"]["properties"]
    full["figures"] = {
        fig: deep_merge(schema_defaults(figure_schemas[fig]), spec) for fig, spec in full.get("figures", {}).items()
    }
    both = sorted(set(full["experiments"]) & set(full["gd_experiments"]))
    if both:
        raise ConfigError(
            f"invalid configuration:\n  - gd_experiments: {', '.join(both)} also named in experiments "
            "(both write results/runs/<experiment>/)"
        )
    for fig, spec in full["figures"].items():
        key = "experiment" if "experiment" in spec else "experiments"
        section = "gd_experiments" if fig in GD_FIGURES else "experiments"
        for i, name in enumerate(figure_experiments(spec)):
            if name not in full[section]:
                where = f"figures.{fig}.{key}" + (f"[{i}]" if key == "experiments" else "")
                raise ConfigError(
                    f"invalid configuration:\n  - {where}: {name!r} is not in {section}; "
                    f"allowed values: {', '.join(full[section]) or '(none)'}"
                )
    full["runs"] = {name: experiment_runs(full, name) for name in full["experiments"]}
    full["runs"].update({name: gd_experiment_runs(full, name) for name in full["gd_experiments"]})
    for fig in ("explr_equivalence", "explr_weight_norm"):
        for name in figure_experiments(full["figures"].get(fig, {})):
            _check_equivalence_experiment(full, fig, name)
    if "svag_convergence" in full["figures"]:
        name = full["figures"]["svag_convergence"]["experiment"]
        if len({run["optimizer"]["svag"] for run in full["runs"][name].values()}) < 2:
            raise ConfigError(
                f"invalid configuration:\n  - experiments.{name} (read by figures.svag_convergence): "
                "its grid must give optimizer.svag at least two values"
            )
    for fig in ("adaptive_sqrt_scaling", "adaptive_svag"):
        if fig in full["figures"]:
            _check_adaptive_experiment(full, fig, full["figures"][fig]["experiment"])
    for fig in ("lsr_validity", "noise_signal"):
        for name in figure_experiments(full["figures"].get(fig, {})):
            runs = full["runs"][name].values()
            if any(not run["gradient_noise"]["every"] for run in runs):
                raise ConfigError(
                    f"invalid configuration:\n  - experiments.{name} (read by figures.{fig}): "
                    "gradient_noise.every must be set (the figure needs G and N)"
                )
            if len({run["training"]["batch_size"] for run in runs}) != len(runs):
                raise ConfigError(
                    f"invalid configuration:\n  - experiments.{name} (read by figures.{fig}): "
                    "its grid must be over training.batch_size only (one run per batch size)"
                )
    return full


def figure_experiments(spec: dict) -> list[str]:
    """The experiments a ``figures`` entry reads (``experiment`` or ``experiments``)."""
    return [spec["experiment"]] if "experiment" in spec else list(spec.get("experiments", []))


def _check_equivalence_experiment(config: dict, figure: str, name: str) -> None:
    grid = config["experiments"][name].get("grid", {})
    problems = [
        f"grid key {key}: [false, true] is missing"
        for key in ("schedule.wd_as_exp_lr", "training.perturb_init")
        if sorted(grid.get(key, [])) != [False, True]
    ]
    if any(run["evaluation"]["logit_samples"] == 0 for run in config["runs"][name].values()):
        problems.append("evaluation.logit_samples must be > 0 (the analysis compares test logits)")
    # Reduced precision would swamp the float32 chaos floor the equivalence is measured against.
    if any(run["training"]["autocast"] or run["training"]["tf32"] for run in config["runs"][name].values()):
        problems.append("training.autocast must be null and training.tf32 false (exactness needs float32)")
    if problems:
        raise ConfigError(
            f"invalid configuration:\n  - experiments.{name} (read by figures.{figure}): " + "; ".join(problems)
        )


def _check_adaptive_experiment(config: dict, figure: str, name: str) -> None:
    runs = list(config["runs"][name].values())
    problems = []
    if any(not is_adaptive(run["optimizer"]) for run in runs):
        problems.append("every run must use optimizer adam or rmsprop")
    if figure == "adaptive_svag" and len({run["optimizer"]["svag"] for run in runs}) < 2:
        problems.append("its grid must give optimizer.svag at least two values")
    if figure == "adaptive_sqrt_scaling":
        grid = config["experiments"][name].get("grid", {})
        missing = [k for k in ("training.batch_size", "schedule.scaling_rule") if k not in grid]
        if missing:
            problems.append(f"its grid must be over {' and '.join(missing)}")
    if problems:
        raise ConfigError(
            f"invalid configuration:\n  - experiments.{name} (read by figures.{figure}): " + "; ".join(problems)
        )


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


def load_config_file(path) -> dict:
    with open(path) as f:
        return load_config(yaml.safe_load(f))


def run_config_json(run: dict) -> str:
    """The canonical JSON text of a resolved run (netCDF ``config_json``, CLI input)."""
    return json.dumps(run, sort_keys=True, indent=1)
