# Configuration, validation and the input functions of every rule.
# Torch-free on purpose: Snakemake re-executes rule files for every cluster job.
import os
import re
import sys
import textwrap
from pathlib import Path

import yaml

from lrdynamics.config import (
    ConfigError,
    figure_experiments,
    load_config,
    run_config_json,
)

try:
    CONFIG = load_config(config)
except ConfigError as err:
    sys.exit(f"lrdynamics: {err}")


def check_writable(folder):
    """Fail before any job when a folder the workflow writes cannot be written."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe = Path(folder) / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        sys.exit(
            f"lrdynamics: cannot write to {folder}/ ({err.strerror}); run from a folder you can write to"
        )


check_writable("results")
check_writable(CONFIG["data_dir"])

DATA_DIR = CONFIG["data_dir"]
RUNS = CONFIG["runs"]
# GPUs a training job asks the scheduler for (none when the config pins the CPU).
TRAIN_GPUS = 0 if CONFIG["device"] == "cpu" else 1


wildcard_constraints:
    experiment="[A-Za-z][A-Za-z0-9_-]*",
    dataset="[A-Za-z][A-Za-z0-9_-]*",
    run="[^/]+",


def experiment_name_pattern(*sections):
    """Regex matching exactly the experiment names of config sections (none: nothing)."""
    names = sorted(
        (name for section in sections for name in CONFIG[section]),
        key=len,
        reverse=True,
    )
    return "|".join(re.escape(name) for name in names) or "(?!)"


def run_path(experiment, run):
    return f"results/runs/{experiment}/{run}.nc"


def experiment_runs(experiment):
    """Run files of one experiment."""
    return [run_path(experiment, run) for run in RUNS[experiment]]


def all_runs():
    return [path for experiment in RUNS for path in experiment_runs(experiment)]


def experiment_run_files(wildcards):
    """Input function: the run files of the experiment of the wildcards."""
    return experiment_runs(wildcards.experiment)


def all_experiment_datasets():
    """results/<experiment>.nc: every experiment's runs in one hypercube."""
    return [f"results/{experiment}.nc" for experiment in RUNS]


def all_figures():
    return [f"results/figures/{figure}.png" for figure in CONFIG["figures"]]


# Analysis files each figure reads (results/analysis/<name>.nc).
FIGURE_ANALYSES = {
    "explr_equivalence": ["explr_equivalence"],
    "intrinsic_lr_equilibrium": ["equilibrium"],
    "equilibrium_time_scaling": ["equilibrium"],
    "angular_update": ["equilibrium"],
    "scale_invariant_toy": ["scale_invariant_toy"],
    "svag_convergence": ["svag"],
    "lsr_validity": ["lsr"],
    "noise_signal": ["lsr"],
    "adaptive_sqrt_scaling": ["adaptive"],
    "adaptive_svag": ["adaptive"],
    "edge_of_stability": ["eos"],
    "regularity": ["eos"],
    "catapult": ["catapult_toy"],
    "balancing": ["balancing_toy"],
}


def figure_analysis_files(figure):
    """Analysis files a figure reads; balancing also reads eos.nc when it names an experiment."""
    names = list(FIGURE_ANALYSES.get(figure, []))
    if figure == "balancing" and "experiment" in CONFIG["figures"].get(figure, {}):
        names.append("eos")
    return [f"results/analysis/{name}.nc" for name in names]


def all_analyses():
    """Analysis files behind the configured figures."""
    return sorted(
        {path for figure in CONFIG["figures"] for path in figure_analysis_files(figure)}
    )


def resolved_run(wildcards):
    """The resolved run config (a dict) of a run wildcard pair."""
    try:
        return RUNS[wildcards.experiment][wildcards.run]
    except KeyError:
        raise ValueError(
            f"no run {wildcards.run!r} in experiment {wildcards.experiment!r}; "
            f"runs: {', '.join(RUNS.get(wildcards.experiment, {}))}"
        ) from None


def run_json(wildcards):
    """Canonical JSON of the run: a changed setting changes params and reruns the job."""
    return run_config_json(resolved_run(wildcards))


def run_dataset_files(wildcards):
    name = resolved_run(wildcards)["dataset"]
    return {split: f"{DATA_DIR}/{name}/{split}.pt" for split in ("train", "test")}


def dataset_spec(wildcards):
    return CONFIG["datasets"][wildcards.dataset]


def figure_experiment_runs(figure):
    """Input function: the run files of every experiment a figure reads."""

    def inputs(wildcards):
        spec = CONFIG["figures"].get(figure, {})
        return [
            path for name in figure_experiments(spec) for path in experiment_runs(name)
        ]

    return inputs


def experiment_titles(figure):
    """Titles of the experiments a figure reads, by name (a param: edits redraw only)."""
    spec = CONFIG["figures"].get(figure, {})
    experiments = {**CONFIG["experiments"], **CONFIG["gd_experiments"]}
    return {
        name: experiments[name].get("title", "") for name in figure_experiments(spec)
    }


def figure_experiment_list(figure):
    """Names of the experiments a figure reads (empty if the figure is not configured)."""
    return figure_experiments(CONFIG["figures"].get(figure, {}))


def figure_settings(figure):
    """A figure's resolved config entry (a param: a changed setting redoes the analysis)."""
    return CONFIG["figures"].get(figure, {})


def lsr_experiments():
    """Experiments of results/analysis/lsr.nc: those of lsr_validity, then noise_signal."""
    names = figure_experiment_list("lsr_validity") + figure_experiment_list(
        "noise_signal"
    )
    return list(dict.fromkeys(names))


def lsr_runs(wildcards):
    return [path for name in lsr_experiments() for path in experiment_runs(name)]


def eos_experiments():
    """GD experiments of results/analysis/eos.nc: those of every GD figure, once each."""
    names = [
        name
        for figure in ("edge_of_stability", "regularity", "balancing")
        for name in figure_experiment_list(figure)
    ]
    return list(dict.fromkeys(names))


def eos_runs(wildcards):
    return [path for name in eos_experiments() for path in experiment_runs(name)]


def eos_settings():
    """Band and late fraction of the EoS analysis (edge_of_stability's, else regularity's)."""
    for figure in ("edge_of_stability", "regularity"):
        if figure in CONFIG["figures"]:
            spec = CONFIG["figures"][figure]
            return {"band": spec["band"], "late_fraction": spec["late_fraction"]}
    return {"band": 0.15, "late_fraction": 0.25}


def toy_balancing_settings():
    """The balancing toy's settings (the figure's entry without its real-net experiment,
    so that changing that experiment does not rerun the toy)."""
    spec = dict(CONFIG["figures"].get("balancing", {}))
    spec.pop("experiment", None)
    return spec


def figure_provenance(figure):
    """The config that made a figure, as an indented YAML block for its report caption:
    its `figures` entry, the experiments it reads and, for SGD experiments, run_defaults.
    """
    made = {"figures": {figure: figure_settings(figure)}}
    names = figure_experiment_list(figure)
    for section in ("experiments", "gd_experiments"):
        named = {
            name: CONFIG[section][name] for name in names if name in CONFIG[section]
        }
        if named:
            made[section] = named
    if "experiments" in made and CONFIG.get("run_defaults"):
        made["run_defaults"] = CONFIG["run_defaults"]
    return textwrap.indent(yaml.safe_dump(made, sort_keys=False, width=88), "    ")


def figure_labels(figure):
    """Report labels of a figure: its name, the experiments it reads, what their grids vary."""
    names = figure_experiment_list(figure)
    varied = dict.fromkeys(
        key
        for name in names
        for run in RUNS.get(name, {}).values()
        for key in run["hyperparameters"]
    )
    return {
        "figure": figure.replace("_", " "),
        "experiments": ", ".join(names) or "toy model (no runs)",
        "grid": ", ".join(varied) or "none",
    }
