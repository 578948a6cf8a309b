"""The vocabulary of the study catalog: a study declares its figures and its analysis
files; the workflow (rules, the plot and analysis scripts, the config checks) reads the
declarations and nothing else.

Plain Python, no torch or numpy: the config imports the catalog before any job starts.
Code is named by dotted path (``"lrdynamics.figures.<study>:plot_<figure>"``) and
imported only by the job that runs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

# A figure's config check: (the experiment's config entry, its resolved runs) -> problems,
# each a phrase such as "its grid must give optimizer.svag at least two values".
Check = Callable[[dict, list[dict]], list[str]]


@dataclass(frozen=True)
class Analysis:
    """``results/analysis/<name>.nc``, written by ``compute(**inputs, **settings)``.

    ``inputs``: input group -> the figures whose experiments' runs feed it (each group is a
    list of run datasets, every run once, in the order the figures list their experiments);
    ``settings``: the figures whose config entry holds its settings (the first configured
    one, else the schema defaults of the first; keys naming experiments left out);
    ``summary``: a function of the written dataset giving the lines for the job's log.
    """

    name: str
    compute: str
    inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    settings: tuple[str, ...] = ()
    summary: str | None = None


@dataclass(frozen=True)
class Figure:
    """``results/figures/<name>.png`` (and ``.pdf``), drawn by ``plot(inputs, png, pdf)``
    (``inputs``: a ``lrdynamics.figures.common.FigureInputs``).

    ``analyses``: the analysis files it reads; ``experiment_analyses``: those it reads only
    when its entry names an experiment; ``reads_runs``: it reads its experiments' run files
    too; ``section``: the config section its experiments are in; ``check``: what its
    experiments must satisfy, checked before any job starts.
    """

    name: str
    plot: str
    analyses: tuple[str, ...] = ()
    experiment_analyses: tuple[str, ...] = ()
    reads_runs: bool = False
    section: str = "experiments"
    check: Check | None = None


@dataclass(frozen=True)
class Claim:
    """One row of the claims ledger (``results/claims.csv``, ``lrdynamics.studies.ledger``).

    ``measure(analyses, **criterion)`` returns a ``ledger.Measurement`` from the analysis
    files it names (``analyses``: name -> dataset, nothing else: the ledger reads no runs)
    and its criterion, the config entry ``claims.<id>`` (thresholds, each with its reason
    in the schema); ``figure``: the figure that shows it; ``paper_value``: the paper's
    number, where it gives one.
    """

    id: str
    paper: str
    statement: str
    figure: str
    measure: str
    analyses: tuple[str, ...]
    paper_value: str = ""


@dataclass(frozen=True)
class Study:
    """One paper's part of the workflow: its report category, figures, analysis files and
    the claims its analyses measure."""

    name: str
    category: str
    figures: tuple[Figure, ...]
    analyses: tuple[Analysis, ...] = ()
    claims: tuple[Claim, ...] = ()


def figure_experiments(spec: dict) -> list[str]:
    """The experiments a ``figures`` entry reads (``experiment`` or ``experiments``)."""
    return [spec["experiment"]] if "experiment" in spec else list(spec.get("experiments", []))


def load(dotted: str):
    """The object a dotted path ``"package.module:name"`` names (importing the module)."""
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def grid_values(runs: list[dict], section: str, key: str) -> set:
    """The values a run key takes over resolved runs (lists made hashable)."""
    return {v if not isinstance(v := run[section][key], list) else tuple(v) for run in runs}
