# Configuration, validation and the input functions of every rule: thin bindings of
# lrdynamics.config.layout to this workflow's config. Torch-free on purpose: Snakemake
# re-executes rule files for every cluster job.
import os
import re
import sys
from pathlib import Path

from lrdynamics.config import ConfigError, load_config, run_config_json
from lrdynamics.config import layout
from lrdynamics.config.rehearsal import describe as describe_rehearsal
from lrdynamics.studies import ANALYSES, CATEGORY, FIGURES

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


# results/, or a rehearsal's own folder (lrdynamics.config.rehearsal); prepared datasets in
# <data_dir>/, or <data_dir>/rehearsal/ (a rehearsal's subsets)
RESULTS = CONFIG["results_dir"]
check_writable(RESULTS)
check_writable(CONFIG["data_dir"])

DATA_DIR = CONFIG["data_dir"]
PREPARED_DIR = CONFIG["prepared_dir"]
# The mark of a rehearsal on every analysis file and figure ("" for real results).
REHEARSAL = describe_rehearsal(CONFIG["rehearsal"]) if CONFIG["rehearsal"] else ""
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


def all_runs():
    return [
        path
        for experiment in RUNS
        for path in layout.experiment_run_paths(CONFIG, experiment)
    ]


def experiment_run_files(wildcards):
    """Input function: the run files of the experiment of the wildcards."""
    return layout.experiment_run_paths(CONFIG, wildcards.experiment)


def all_experiment_datasets():
    """<results>/<experiment>.nc: every experiment's runs in one hypercube."""
    return [f"{RESULTS}/{experiment}.nc" for experiment in RUNS]


def all_figures():
    return [f"{RESULTS}/figures/{figure}.png" for figure in CONFIG["figures"]]


def all_analyses():
    """Analysis files behind the configured figures."""
    return [
        layout.analysis_path(CONFIG, name) for name in layout.needed_analyses(CONFIG)
    ]


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
    return {split: f"{PREPARED_DIR}/{name}/{split}.pt" for split in ("train", "test")}


def dataset_spec(wildcards):
    return CONFIG["datasets"][wildcards.dataset]
