"""SDEs and scaling rules for adaptive methods (Malladi, Lyu, Panigrahi & Arora, NeurIPS
2022; docs/science.md section 5): the square-root scaling rule keeps Adam and RMSprop on
the same SDE across batch sizes, and adaptive SVAG converges to it.

The analysis is ``analysis``; the figures ``lrdynamics.figures.adaptive_sde``; the claims
are measured in ``claims``.
"""

from lrdynamics.engine.adaptive import ADAPTIVE_OPTIMIZERS
from lrdynamics.studies.catalog import Analysis, Claim, Figure, Study, grid_values

REFERENCE = (
    "Malladi, Lyu, Panigrahi & Arora, On the SDEs and Scaling Rules for Adaptive Gradient Algorithms, NeurIPS 2022"
)
FIGURES = "lrdynamics.figures.adaptive_sde"
CLAIMS = "lrdynamics.studies.adaptive_sde.claims"
PAPER = "Malladi, Lyu, Panigrahi & Arora 2022"


def _adaptive_problems(runs: list[dict]) -> list[str]:
    if any(run["optimizer"]["name"] not in ADAPTIVE_OPTIMIZERS for run in runs):
        return ["every run must use optimizer adam or rmsprop"]
    return []


def check_sqrt_scaling_experiment(experiment: dict, runs: list[dict]) -> list[str]:
    grid = experiment.get("grid", {})
    missing = [k for k in ("training.batch_size", "schedule.scaling_rule") if k not in grid]
    return _adaptive_problems(runs) + ([f"its grid must be over {' and '.join(missing)}"] if missing else [])


def check_adaptive_svag_experiment(experiment: dict, runs: list[dict]) -> list[str]:
    few = len(grid_values(runs, "optimizer", "svag")) < 2
    return _adaptive_problems(runs) + (["its grid must give optimizer.svag at least two values"] if few else [])


STUDY = Study(
    name="adaptive_sde",
    category="Adaptive methods (Malladi et al. 2022)",
    figures=(
        Figure(
            "adaptive_sqrt_scaling",
            f"{FIGURES}:plot_adaptive_sqrt_scaling",
            analyses=("adaptive",),
            check=check_sqrt_scaling_experiment,
        ),
        Figure(
            "adaptive_svag",
            f"{FIGURES}:plot_adaptive_svag",
            analyses=("adaptive",),
            check=check_adaptive_svag_experiment,
        ),
    ),
    analyses=(
        Analysis(
            "adaptive",
            "lrdynamics.studies.adaptive_sde.analysis:adaptive_analysis",
            inputs={"scaling": ("adaptive_sqrt_scaling",), "svag": ("adaptive_svag",)},
            summary="lrdynamics.studies.adaptive_sde.analysis:summary",
        ),
    ),
    claims=(
        Claim(
            "sqrt_rule_closest",
            PAPER,
            "The square-root rule keeps Adam and RMSprop closer across "
            "batch sizes than no scaling and the linear rule.",
            "adaptive_sqrt_scaling",
            f"{CLAIMS}:sqrt_rule_closest",
            ("adaptive",),
        ),
        Claim(
            "adaptive_svag_converges",
            PAPER,
            "Adaptive SVAG converges as l grows (Adam and RMSprop).",
            "adaptive_svag",
            f"{CLAIMS}:adaptive_svag_converges",
            ("adaptive",),
        ),
    ),
)
