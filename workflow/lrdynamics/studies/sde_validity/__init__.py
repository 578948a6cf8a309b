"""SVAG and the validity of the SDE picture of SGD (Li, Malladi & Arora, NeurIPS 2021;
docs/science.md section 4): SVAG converges to the SDE as l grows; the linear scaling rule
holds while the gradient noise dominates, up to a critical batch size B* predicted from
the measured gradient signal G and noise N.

The analyses are ``svag`` and ``lsr``; the figures ``lrdynamics.figures.sde_validity``; the
claims are measured in ``claims``.
"""

from lrdynamics.studies.catalog import Analysis, Claim, Figure, Study, grid_values

REFERENCE = "Li, Malladi & Arora, On the Validity of Modeling SGD with Stochastic Differential Equations, NeurIPS 2021"
FIGURES = "lrdynamics.figures.sde_validity"
CLAIMS = "lrdynamics.studies.sde_validity.claims"
PAPER = "Li, Malladi & Arora 2021"


def check_svag_experiment(experiment: dict, runs: list[dict]) -> list[str]:
    if len(grid_values(runs, "optimizer", "svag")) < 2:
        return ["its grid must give optimizer.svag at least two values"]
    return []


def check_lsr_experiment(experiment: dict, runs: list[dict]) -> list[str]:
    """One run per batch size, each measuring G and N."""
    problems = []
    if any(not run["gradient_noise"]["every"] for run in runs):
        problems.append("gradient_noise.every must be set (the figure needs G and N)")
    if len(grid_values(runs, "training", "batch_size")) != len(runs):
        problems.append("its grid must be over training.batch_size only (one run per batch size)")
    return problems


STUDY = Study(
    name="sde_validity",
    category="SVAG and the SDE (Li, Malladi & Arora 2021)",
    figures=(
        Figure("svag_convergence", f"{FIGURES}:plot_svag_convergence", analyses=("svag",), check=check_svag_experiment),
        Figure("lsr_validity", f"{FIGURES}:plot_lsr_validity", analyses=("lsr",), check=check_lsr_experiment),
        Figure("noise_signal", f"{FIGURES}:plot_noise_signal", analyses=("lsr",), check=check_lsr_experiment),
    ),
    analyses=(
        Analysis(
            "svag",
            "lrdynamics.studies.sde_validity.svag:svag_analysis",
            inputs={"runs": ("svag_convergence",)},
            summary="lrdynamics.studies.sde_validity.svag:summary",
        ),
        Analysis(
            "lsr",
            "lrdynamics.studies.sde_validity.lsr:lsr_analysis",
            inputs={"runs": ("lsr_validity", "noise_signal")},
            settings=("lsr_validity",),
            summary="lrdynamics.studies.sde_validity.lsr:summary",
        ),
    ),
    claims=(
        Claim(
            "svag_rate",
            PAPER,
            "SVAG converges as l grows, at rate O(1/l): |f_l - f_2l| ~ l^(-1).",
            "svag_convergence",
            f"{CLAIMS}:svag_rate",
            ("svag",),
            "weak error O(1/l)",
        ),
        Claim(
            "lsr_critical_batch",
            PAPER,
            "The linear scaling rule holds below the predicted critical batch size B* and breaks above it.",
            "lsr_validity",
            f"{CLAIMS}:lsr_holds_below_critical_batch",
            ("lsr",),
            "B* ~ (C^2-1) tr Sigma_1/|grad L|^2",
        ),
    ),
)
