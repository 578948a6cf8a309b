"""Exponential LR (Li & Arora, ICLR 2020; docs/science.md section 2): on a scale-invariant
net, SGD with weight decay is the same trajectory as SGD without it under an exponentially
growing LR (constant -> Exp LR, step decay -> TEXP, cosine -> exponential cosine).

The analysis is ``equivalence``; the figures are ``lrdynamics.figures.exponential_lr``.
"""

from lrdynamics.studies.catalog import Analysis, Figure, Study

REFERENCE = "Li & Arora, An Exponential Learning Rate Schedule for Deep Learning, ICLR 2020"
FIGURES = "lrdynamics.figures.exponential_lr"


def check_equivalence_experiment(experiment: dict, runs: list[dict]) -> list[str]:
    """An equivalence experiment pairs each run with its exact counterpart and a 1-ulp twin,
    and stores test logits; reduced precision would swamp the float32 chaos floor."""
    grid = experiment.get("grid", {})
    problems = [
        f"grid key {key}: [false, true] is missing"
        for key in ("schedule.wd_as_exp_lr", "training.perturb_init")
        if sorted(grid.get(key, [])) != [False, True]
    ]
    if any(run["evaluation"]["logit_samples"] == 0 for run in runs):
        problems.append("evaluation.logit_samples must be > 0 (the analysis compares test logits)")
    if any(run["training"]["autocast"] or run["training"]["tf32"] for run in runs):
        problems.append("training.autocast must be null and training.tf32 false (exactness needs float32)")
    return problems


STUDY = Study(
    name="exponential_lr",
    category="Exponential LR (Li & Arora 2020)",
    figures=(
        Figure(
            "explr_equivalence",
            f"{FIGURES}:plot_explr_equivalence",
            analyses=("explr_equivalence",),
            check=check_equivalence_experiment,
        ),
        Figure(
            "explr_weight_norm",
            f"{FIGURES}:plot_explr_weight_norm",
            reads_runs=True,
            check=check_equivalence_experiment,
        ),
        Figure("texp_vs_step", f"{FIGURES}:plot_texp_vs_step", reads_runs=True),
    ),
    analyses=(
        Analysis(
            "explr_equivalence",
            "lrdynamics.studies.exponential_lr.equivalence:explr_equivalence",
            inputs={"runs": ("explr_equivalence",)},
            summary="lrdynamics.studies.exponential_lr.equivalence:summary",
        ),
    ),
)
