# Configuration, validation and the input functions of every rule.
# Torch-free on purpose: Snakemake re-executes rule files for every cluster job.
import sys
from pathlib import Path

from lrdynamics.config import ConfigError, load_config, run_config_json

try:
    CONFIG = load_config(config)
except ConfigError as err:
    sys.exit(f"lrdynamics: {err}")

DATA_DIR = CONFIG["data_dir"]
RUNS = CONFIG["runs"]


wildcard_constraints:
    experiment="[A-Za-z][A-Za-z0-9_-]*",
    dataset="[A-Za-z][A-Za-z0-9_-]*",
    run="[^/]+",


def run_path(experiment, run):
    return f"results/runs/{experiment}/{run}.nc"


def experiment_runs(experiment):
    """Run files of one experiment."""
    return [run_path(experiment, run) for run in RUNS[experiment]]


def all_runs():
    return [path for experiment in RUNS for path in experiment_runs(experiment)]


def all_figures():
    return [f"results/figures/{figure}.png" for figure in CONFIG["figures"]]


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


def figure_runs(figure):
    """Input function: the run files of the experiment a figure reads."""

    def inputs(wildcards):
        return experiment_runs(CONFIG["figures"][figure]["experiment"])

    return inputs


def figure_title(figure):
    """Title of the experiment a figure reads (a param: editing it redraws, not retrains)."""
    experiment = CONFIG["figures"].get(figure, {}).get("experiment")
    return CONFIG["experiments"].get(experiment, {}).get("title", "")
