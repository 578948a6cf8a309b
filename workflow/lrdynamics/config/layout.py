"""The workflow's layout on a resolved config (``load_config``), as plain functions of it:
the files of runs, figures and analyses, which runs an analysis reads and its settings,
and what a figure's report entry says. The rule files bind them to the workflow's config
(``workflow/rules/common.smk``); the study catalog (``lrdynamics.studies``) says what each
figure and analysis reads.
"""

from __future__ import annotations

import textwrap

import yaml

from lrdynamics.config.schema import figure_schema, schema_defaults
from lrdynamics.studies import ANALYSES, CLAIMS, FIGURES, figure_experiments


def run_path(config: dict, experiment: str, run: str) -> str:
    """``<results>/runs/<experiment>/<run>.nc`` (``results/``, or a rehearsal's folder)."""
    return f"{config['results_dir']}/runs/{experiment}/{run}.nc"


def experiment_run_paths(config: dict, experiment: str) -> list[str]:
    """Run files of one experiment (either section)."""
    return [run_path(config, experiment, run) for run in config["runs"][experiment]]


def figure_experiment_list(config: dict, figure: str) -> list[str]:
    """Names of the experiments a figure reads (empty if the figure is not configured)."""
    return figure_experiments(config["figures"].get(figure, {}))


def figure_run_paths(config: dict, figure: str) -> list[str]:
    """Run files of every experiment a figure reads."""
    return [path for name in figure_experiment_list(config, figure) for path in experiment_run_paths(config, name)]


def figure_analyses(config: dict, figure: str) -> list[str]:
    """Names of the analysis files a figure reads (``Figure.analyses``, and
    ``experiment_analyses`` when its entry names an experiment)."""
    fig = FIGURES[figure]
    extra = fig.experiment_analyses if figure_experiment_list(config, figure) else ()
    return [*fig.analyses, *extra]


def analysis_path(config: dict, name: str) -> str:
    return f"{config['results_dir']}/analysis/{name}.nc"


def needed_analyses(config: dict) -> list[str]:
    """The analyses behind the configured figures, in catalog order."""
    wanted = {name for figure in config["figures"] for name in figure_analyses(config, figure)}
    return [name for name in ANALYSES if name in wanted]


def analysis_experiments(config: dict, analysis: str) -> dict[str, list[str]]:
    """The experiments of each input group of an analysis: those of the group's figures,
    each once, in the order the figures list them (an analysis may read meaning into the
    order: the first history of ``intrinsic_lr_equilibrium`` is the reference)."""
    return {
        group: list(dict.fromkeys(name for figure in figures for name in figure_experiment_list(config, figure)))
        for group, figures in ANALYSES[analysis].inputs.items()
    }


def analysis_inputs(config: dict, analysis: str) -> dict[str, list[str]]:
    """The run files of each input group of an analysis (``analysis_experiments``' runs)."""
    return {
        group: [path for name in names for path in experiment_run_paths(config, name)]
        for group, names in analysis_experiments(config, analysis).items()
    }


def _without_experiments(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k not in ("experiment", "experiments")}


def analysis_settings(config: dict, analysis: str) -> dict:
    """An analysis's settings: the entry of the first configured figure of
    ``Analysis.settings``, else the schema defaults of the first; keys that name
    experiments left out (so changing an experiment does not redo a toy)."""
    figures = ANALYSES[analysis].settings
    for figure in figures:
        if figure in config["figures"]:
            return _without_experiments(config["figures"][figure])
    return _without_experiments(schema_defaults(figure_schema(figures[0]))) if figures else {}


def experiment_titles(config: dict, figure: str) -> dict[str, str]:
    """Titles of the experiments a figure reads, by name (a param: edits redraw only)."""
    experiments = {**config["experiments"], **config["gd_experiments"]}
    return {name: experiments[name].get("title", "") for name in figure_experiment_list(config, figure)}


def figure_provenance(config: dict, figure: str) -> str:
    """The config that made a figure, as an indented YAML block for its report caption:
    its ``figures`` entry, the experiments it reads and, for SGD experiments, run_defaults."""
    made = {"figures": {figure: config["figures"].get(figure, {})}}
    names = figure_experiment_list(config, figure)
    for section in ("experiments", "gd_experiments"):
        named = {name: config[section][name] for name in names if name in config[section]}
        if named:
            made[section] = named
    if "experiments" in made and config.get("run_defaults"):
        made["run_defaults"] = config["run_defaults"]
    return textwrap.indent(yaml.safe_dump(made, sort_keys=False, width=88), "    ")


def figure_labels(config: dict, figure: str) -> dict[str, str]:
    """Report labels of a figure: its name, the experiments it reads, what their grids vary."""
    names = figure_experiment_list(config, figure)
    varied = dict.fromkeys(
        key for name in names for run in config["runs"].get(name, {}).values() for key in run["hyperparameters"]
    )
    return {
        "figure": figure.replace("_", " "),
        "experiments": ", ".join(names) or "toy model (no runs)",
        "grid": ", ".join(varied) or "none",
    }


def measured_claims(config: dict) -> list[str]:
    """The claims this config measures: those whose figure is configured and whose
    analysis files it makes (the others are in the ledger as not measured)."""
    made = set(needed_analyses(config))
    return [c.id for c in CLAIMS.values() if c.figure in config["figures"] and set(c.analyses) <= made]


def claim_analysis_paths(config: dict) -> list[str]:
    """The analysis files the claims ledger reads."""
    names = dict.fromkeys(name for cid in measured_claims(config) for name in CLAIMS[cid].analyses)
    return [analysis_path(config, name) for name in names]
