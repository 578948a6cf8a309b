"""Rehearsal mode (config key ``rehearsal``): any config's whole DAG, every experiment and
figure, at a fraction of its length and with caps on what makes a CPU run slow, so that a
paper-scale config can be tried on a workstation before it is sent to a cluster.

The rehearsal changes the resolved runs, never the raw config: each run of an experiment
gets the experiment's length factor on every time (epochs, milestones, warm-up, evaluation
and noise cadences, the direction anchor; GD steps and the sharpness cadence), and the caps
below. The factor is ``length``, raised for an experiment (x 2^(1/4) at a time, at most 1)
until every phase of every run (each piece between milestones) has at least one update and
the run passes the same checks as a real one; cadences are made coarser where they would
give more than ``evaluations`` points. An experiment's batch sizes above ``batch_size`` are
mapped below it (``batch_map``: in order and distinct, so every grid point stays a distinct
run and the batch-size analyses see as many sizes; their ratios kept where they fit), the
scaling rules applied again, and a batch above ``micro_batch_size`` is trained by gradient
accumulation.

Rehearsal outputs cannot pass for results: they go to ``results_dir`` (its own folder), the
prepared datasets to ``<data_dir>/rehearsal/``, each run's config carries the key
``rehearsal`` (in every run file's ``config_json`` and the attribute ``rehearsal``), every
analysis file has the attribute, every figure a banner, and the claims ledger says
``measured_in: rehearsal`` with every verdict ``not resolved``.

``REHEARSAL_KEYS`` names every run key a rehearsal may change and how; the paper-config
rehearsal test asserts that they are the only differences from the real config.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml

from lrdynamics.config.checks import check_gd_run, check_run
from lrdynamics.config.schema import ConfigError, config_error, load_schema, schema_defaults
from lrdynamics.engine.adaptive import is_adaptive
from lrdynamics.engine.facts import DATASET_SOURCES, channel_counts
from lrdynamics.engine.schedules import MILESTONE_SCHEDULES, milestone_steps, steps_per_epoch, total_steps
from lrdynamics.studies import figure_experiments

# Run keys a rehearsal changes: "length" (times the experiment's factor), "cadence" (times
# the factor, or coarser to give at most `evaluations` points), "batch" (``batch_map``: batch
# sizes and SVAG's l),
# "rule" (the scaling rule applied again at the new batch sizes), "cap" (at most the
# rehearsal's value; a null one, meaning all or the default, may become the cap), "floor"
# (at least the rehearsal's value), "set" (the
# run's rehearsal record, the prepared dataset's folder and spec).
REHEARSAL_KEYS = {
    "training.epochs": "length",
    "schedule.milestones": "length",
    "schedule.warmup": "length",
    "evaluation.every": "cadence",
    "evaluation.direction_anchor": "length",
    "gradient_noise.every": "cadence",
    "steps": "length",
    "sharpness_every": "cadence",
    "training.batch_size": "batch",
    "schedule.reference_batch_size": "batch",
    "schedule.lr": "rule",
    "schedule.reference_lr": "rule",
    "optimizer.beta1": "rule",
    "optimizer.beta2": "rule",
    "optimizer.eps": "rule",
    "evaluation.per_decade": "cap",
    "gradient_noise.samples": "cap",
    "optimizer.svag": "batch",
    "training.ensemble": "cap",
    "training.ensemble_chunk": "cap",
    "training.micro_batch_size": "cap",
    "gradient_noise.batches": "cap",
    "evaluation.train_samples": "cap",
    "evaluation.test_samples": "cap",
    "evaluation.prediction_samples": "cap",
    "evaluation.logit_samples": "cap",
    "evaluation.bn_recalibration_samples": "cap",
    "model.width_multiplier": "cap",
    "model.width": "cap",
    "examples": "cap",
    "sharpness_tol": "floor",
    "rehearsal": "set",
    "dataset_dir": "set",
    "dataset_spec.train_subset": "cap",
    "dataset_spec.test_subset": "cap",
}
# Figure settings that are times in epochs (scaled by the largest factor of the figure's experiments).
FIGURE_TIME_KEYS = {"lsr_validity": ("noise_window",)}
GROWTH = 2.0**0.25  # the factor's step when a phase of some run has no update


def from_command_line(value):
    """``--config 'rehearsal={length: 0.01}'``: Snakemake reads a dict on its command line
    with YAML's base loader, every value a string; each is read again as YAML (numbers,
    null)."""
    if not isinstance(value, dict):
        return value
    return {k: yaml.safe_load(v) if isinstance(v, str) and k != "results_dir" else v for k, v in value.items()}


def rehearsal_spec(config: dict) -> dict | None:
    """The config's ``rehearsal`` with its defaults filled (None: not a rehearsal)."""
    given = config.get("rehearsal")
    if given is None:
        return None
    props = load_schema()["properties"]["rehearsal"]["properties"]
    return {**schema_defaults({"type": "object", "properties": props}), **given}


def describe(spec: dict) -> str:
    """One line for banners, attributes and logs: the rehearsal's knobs."""
    caps = ", ".join(f"{k} {v}" for k, v in spec.items() if k not in ("length", "results_dir") and v is not None)
    return f"REHEARSAL (length x{spec['length']:g}; caps: {caps}): not a result"


def _cap(value, cap):
    """min(value, cap), where a null value (all / the default) becomes the cap."""
    if cap is None:
        return value
    return cap if value is None else min(value, cap)


def _scaled(value, factor):
    return None if value is None else value * factor


def batch_map(batch_sizes, cap: int, what: str = "batch_size") -> dict[int, int]:
    """The rehearsal's values of an experiment's batch sizes (and its reference batch size;
    or its SVAG l): none above ``cap``, in the same order and all distinct. Unchanged when
    the largest fits; else B -> cap (B/B_max)^s, with s = 1 (the ratios, so κ and the linear
    rule's LRs, kept) unless the smallest would fall below 1, then the exponent that maps it
    to 1; rounded, and raised where two would coincide."""
    sizes = sorted(set(batch_sizes))
    top, bottom = sizes[-1], sizes[0]
    if top <= cap:
        return {b: b for b in sizes}
    s = 1.0 if bottom * cap >= top else math.log(cap) / math.log(top / bottom)
    out, last = {}, 0
    for b in sizes:
        mapped = max(1, round(cap * (b / top) ** s), last + 1)
        out[b], last = mapped, mapped
    if last > cap:
        raise config_error([f"rehearsal.{what}: {cap} cannot hold {len(sizes)} distinct values ({sizes})"])
    return out


def _rescale_batch(run: dict, batches: dict[int, int]) -> None:
    """The run at its rehearsal batch size, the scaling rule applied again (from the
    configured LR, betas and eps) at the mapped reference batch size."""
    from lrdynamics.config.runs import apply_scaling_rule  # (runs imports this module)

    tr, sched, opt = run["training"], run["schedule"], run["optimizer"]
    tr["batch_size"] = batches[tr["batch_size"]]
    if sched["reference_batch_size"] in batches:  # (mapped where the experiment uses a rule: κ kept)
        sched["reference_batch_size"] = batches[sched["reference_batch_size"]]
    sched["lr"] = sched.pop("reference_lr")
    for key in ("beta1", "beta2", "eps"):
        if f"reference_{key}" in opt:
            opt[key] = opt.pop(f"reference_{key}")
    apply_scaling_rule(run)


def _cadence(every, unit: str, epochs: float, spe: int, evaluations: int):
    """A cadence times the length, made coarser where it would give more than
    ``evaluations`` points."""
    if every is None:
        return None
    length = epochs if unit == "epoch" else epochs * spe
    return max(every, length / evaluations)


def rehearsed_sgd_run(
    run: dict, factor: float, spec: dict, batches: dict[int, int], n_train: int, window: float | None = None
) -> dict:
    """An SGD-type run at ``factor`` of its length with the rehearsal's caps. ``window``: the
    length (epochs, at full scale) of a figure's noise window over this run: the noise
    cadence stays fine enough to put two measurements in it."""
    r = copy.deepcopy(run)
    tr, sched, ev, gn, model = r["training"], r["schedule"], r["evaluation"], r["gradient_noise"], r["model"]
    _rescale_batch(r, batches)
    tr["epochs"] *= factor
    sched["milestones"] = [m * factor for m in sched["milestones"]]
    sched["warmup"] *= factor
    spe = steps_per_epoch(n_train, tr["batch_size"], tr["drop_last"])
    ev["every"] = _cadence(ev["every"] * factor, ev["unit"], tr["epochs"], spe, spec["evaluations"])
    ev["per_decade"] = _cap(ev["per_decade"], spec["evaluations"]) if ev["per_decade"] else None
    ev["direction_anchor"] = _scaled(ev["direction_anchor"], factor)
    gn["every"] = _cadence(_scaled(gn["every"], factor), gn["unit"], tr["epochs"], spe, spec["evaluations"])
    if window and gn["every"] is not None:
        finest = window * factor / 2 * (1 if gn["unit"] == "epoch" else spe)
        gn["every"] = min(gn["every"], max(finest, _scaled(run["gradient_noise"]["every"], factor)))
    if "ensemble" in tr:  # (an ensemble of one has no ensemble keys)
        tr["ensemble"] = min(tr["ensemble"], spec["ensemble"])
        tr["ensemble_chunk"] = _cap(tr["ensemble_chunk"], tr["ensemble"]) if tr["ensemble_chunk"] else None
    if tr["batch_size"] > spec["micro_batch_size"]:
        tr["micro_batch_size"] = _cap(tr["micro_batch_size"], spec["micro_batch_size"])
    if gn["every"] is not None:
        gn["batches"] = _cap(gn["batches"], spec["noise_batches"])
        gn["samples"] = _cap(gn["samples"], spec["noise_batches"])
    for key in ("train_samples", "prediction_samples", "logit_samples", "bn_recalibration_samples"):
        if key in ev and (key == "train_samples" or ev[key]):
            ev[key] = _cap(ev[key], spec["eval_images"])
    ev["test_samples"] = _cap(ev["test_samples"], spec["test_images"])
    if model.get("width_multiplier") is not None:
        model["width_multiplier"] = _width_cap(model, spec["width_multiplier"])
    if model.get("width") is not None:
        model["width"] = _cap(model["width"], spec["width"])
    return r


def _width_cap(model: dict, cap: float | None) -> float:
    """The smallest of cap, 2 cap, 4 cap, ... (at most the configured multiplier) whose channel
    counts are whole and, under GroupNorm, divisible by the groups."""
    configured = model["width_multiplier"]
    if cap is None:
        return configured
    w = min(configured, cap)
    while w < configured:
        counts = channel_counts({**model, "width_multiplier": w})
        if all(c == int(c) and c >= 1 for c in counts) and (
            model["norm"] != "gn" or all(int(c) % model["groups"] == 0 for c in counts)
        ):
            break
        w = min(configured, 2 * w)
    return w


def rehearsed_gd_run(run: dict, factor: float, spec: dict) -> dict:
    """A full-batch GD run at ``factor`` of its steps, on at most ``gd_examples`` images."""
    r = copy.deepcopy(run)
    r["steps"] = max(1, round(r["steps"] * factor))
    # (a sharpness measurement is a Lanczos run: at most ``evaluations`` of them)
    r["sharpness_every"] = max(1, round(r["sharpness_every"] * factor), math.ceil(r["steps"] / spec["evaluations"]))
    r["examples"] = min(r["examples"], spec["gd_examples"])
    r["sharpness_tol"] = max(r["sharpness_tol"], spec["sharpness_tol"])
    return r


def _n_train(run: dict, config: dict) -> int:
    """Training images of the run's (rehearsed) dataset."""
    ds = config["datasets"][run["dataset"]]
    return ds["train_subset"] or DATASET_SOURCES[ds["source"]].n_train


def _steps_per_epoch(run: dict, config: dict) -> int:
    tr = run["training"]
    return steps_per_epoch(_n_train(run, config), tr["batch_size"], tr["drop_last"])


def _phases_ok(run: dict, config: dict) -> bool:
    """Every piece of the schedule (0 .. first milestone .. last .. end) has an update."""
    if "kind" in run:  # GD: one phase
        return run["steps"] >= 1
    sched, spe = run["schedule"], _steps_per_epoch(run, config)
    n_steps = total_steps(run["training"]["epochs"], spe)
    steps = [0, *(milestone_steps(sched, spe) if sched["name"] in MILESTONE_SCHEDULES else []), n_steps]
    return all(b > a for a, b in zip(steps, steps[1:]))


def _window_ok(run: dict, config: dict, window: float | None, factor: float) -> bool:
    """A figure's noise window (``window`` epochs at full scale) spans at least 2 steps of
    the run, so that it holds a noise measurement (the cadence is at most half of it)."""
    if not window or "kind" in run:
        return True
    return window * factor * _steps_per_epoch(run, config) >= 2


def _rehearsed_datasets(config: dict, spec: dict) -> dict:
    """Each dataset's train subset capped at ``train_images``, raised to the largest batch
    (and GD example count) of its runs, and its test subset capped at ``test_images``."""
    datasets = copy.deepcopy(config["datasets"])
    for name, ds in datasets.items():
        source = DATASET_SOURCES[ds["source"]]
        runs = [r for exp in config["runs"].values() for r in exp.values() if r["dataset"] == name]
        need = max(
            [min(r["training"]["batch_size"], spec["batch_size"]) for r in runs if "training" in r]
            + [min(r["examples"], spec["gd_examples"]) for r in runs if "examples" in r]
            + [1]
        )
        native = ds["train_subset"] or source.n_train
        ds["train_subset"] = min(native, max(spec["train_images"], need))
        ds["test_subset"] = min(ds["test_subset"] or source.n_test, spec["test_images"])
    return datasets


def rehearse(config: dict) -> None:
    """Turn a resolved config (``load_config``) into its rehearsal, in place (no-op unless
    ``rehearsal`` is set). Raises ConfigError when an experiment cannot be rehearsed."""
    spec = rehearsal_spec(config)
    if spec is None:
        return
    config["rehearsal"] = spec
    config["results_dir"] = spec["results_dir"]
    config["prepared_dir"] = str(Path(config["data_dir"]) / "rehearsal")
    config["datasets"] = _rehearsed_datasets(config, spec)
    config["claims"]["measured_in"] = "rehearsal"
    factors, windows = {}, {}
    for figure, keys in FIGURE_TIME_KEYS.items():  # noise windows: their experiments keep two measurements in them
        entry = config["figures"].get(figure) or {}
        for key in keys:
            if entry.get(key) is not None:
                for experiment in figure_experiments(entry):
                    windows[experiment] = entry[key][1] - entry[key][0]
    for name, runs in config["runs"].items():
        config["runs"][name], factors[name] = _rehearsed_experiment(config, name, runs, spec, windows.get(name))
    for figure, keys in FIGURE_TIME_KEYS.items():
        entry = config["figures"].get(figure)
        if entry is None:
            continue
        factor = max((factors[e] for e in figure_experiments(entry) if e in factors), default=spec["length"])
        for key in keys:
            if entry.get(key) is not None:
                entry[key] = [t * factor for t in entry[key]]


def _rehearsed_experiment(config: dict, name: str, runs: dict, spec: dict, window=None) -> tuple[dict, float]:
    factor, last_error = spec["length"], None
    sgd = [r for r in runs.values() if "kind" not in r]
    # the reference batch sizes too where a scaling rule reads them (κ kept)
    uses_rule = any(r["schedule"]["scaling_rule"] != "none" for r in sgd)
    references = [r["schedule"]["reference_batch_size"] for r in sgd] if uses_rule else []
    batches = batch_map([r["training"]["batch_size"] for r in sgd] + references or [1], spec["batch_size"])
    # SVAG's l: at most svag_updates updates per effective step (l, or l^2 for adam/rmsprop)
    adaptive = any(is_adaptive(r["optimizer"]) for r in sgd)
    l_cap = math.isqrt(spec["svag_updates"]) if adaptive else spec["svag_updates"]
    svag = batch_map([r["optimizer"]["svag"] for r in sgd] or [1], max(1, l_cap), "svag_updates")
    while True:
        try:
            rehearsed = {
                run_name: _rehearsed_run(config, run, factor, spec, batches, svag, window)
                for run_name, run in runs.items()
            }
            if all(_phases_ok(r, config) and _window_ok(r, config, window, factor) for r in rehearsed.values()):
                return rehearsed, factor
            last_error = "a phase of its schedule has no update, or a noise window spans less than 2 steps"
        except ConfigError as err:
            last_error = str(err)
        if factor >= 1.0:
            raise config_error([f"rehearsal: experiment {name} cannot be rehearsed at any length: {last_error}"])
        factor = min(1.0, factor * GROWTH)


def _rehearsed_run(config: dict, run: dict, factor: float, spec: dict, batches: dict, svag: dict, window) -> dict:
    gd = "kind" in run
    ds = config["datasets"][run["dataset"]]
    if gd:
        r = rehearsed_gd_run(run, factor, spec)
    else:
        r = rehearsed_sgd_run(run, factor, spec, batches, _n_train(run, config), window)
        r["optimizer"]["svag"] = svag[run["optimizer"]["svag"]]
    r["dataset_spec"] = {**ds, "name": r["dataset"]}
    r["dataset_dir"] = str(Path(config["prepared_dir"]) / r["dataset"])
    r["rehearsal"] = {**{k: v for k, v in spec.items() if k != "results_dir"}, "length": factor}
    where = f"rehearsal of {r['experiment']} (run {r['run']})"
    (check_gd_run if gd else check_run)(r, config, where)
    return r
