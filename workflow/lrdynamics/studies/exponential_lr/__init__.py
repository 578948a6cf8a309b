"""Exponential LR (Li & Arora, ICLR 2020; docs/science.md section 2): on a scale-invariant
net, SGD with weight decay is the same trajectory as SGD without it under an exponentially
growing LR (constant -> Exp LR, step decay -> TEXP, cosine -> exponential cosine).

The analyses are ``equivalence`` and ``decays``; the figures are
``lrdynamics.figures.exponential_lr``; the claims are measured in ``claims``.
"""

from lrdynamics.studies.catalog import Analysis, Claim, Figure, Study

REFERENCE = "Li & Arora, An Exponential Learning Rate Schedule for Deep Learning, ICLR 2020"
FIGURES = "lrdynamics.figures.exponential_lr"
CLAIMS = "lrdynamics.studies.exponential_lr.claims"
PAPER = "Li & Arora 2020"


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
        Figure("texp_vs_step", f"{FIGURES}:plot_texp_vs_step", analyses=("decay_equilibrium",), reads_runs=True),
    ),
    analyses=(
        Analysis(
            "explr_equivalence",
            "lrdynamics.studies.exponential_lr.equivalence:explr_equivalence",
            inputs={"runs": ("explr_equivalence",)},
            summary="lrdynamics.studies.exponential_lr.equivalence:summary",
        ),
        Analysis(
            "decay_equilibrium",
            "lrdynamics.studies.exponential_lr.decays:decay_equilibrium",
            inputs={"runs": ("texp_vs_step",)},
            summary="lrdynamics.studies.exponential_lr.decays:summary",
        ),
    ),
    claims=(
        Claim(
            "explr_equals_constant",
            PAPER,
            "Exp LR without WD trains the same function as constant LR with WD (within the float32 chaos floor).",
            "explr_equivalence",
            f"{CLAIMS}:explr_equals_constant",
            ("explr_equivalence",),
            "Fig. 1: same trajectory",
        ),
        Claim(
            "texp_equals_step",
            PAPER,
            "TEXP trains the same function as step decay with WD.",
            "explr_equivalence",
            f"{CLAIMS}:texp_equals_step",
            ("explr_equivalence",),
            "same curves, ~93-94% test accuracy",
        ),
        Claim(
            "exp_cosine_equals_cosine",
            PAPER,
            "The exponential counterpart of cosine trains the same function as cosine with WD.",
            "explr_equivalence",
            f"{CLAIMS}:exp_cosine_equals_cosine",
            ("explr_equivalence",),
        ),
        Claim(
            "explr_norm_growth",
            PAPER,
            "Under Exp LR the weight norm grows exponentially, at rate "
            "-ln(alpha) per step, while the function does not care.",
            "explr_weight_norm",
            f"{CLAIMS}:explr_norm_growth",
            ("explr_equivalence",),
            "Fig. 1: a conv layer's norm grows exponentially",
        ),
        Claim(
            "instant_decay_temporary",
            PAPER,
            "An instant x0.1 decay of Exp LR has only a temporary effect: the net "
            "returns to the same equilibrium in function space.",
            "texp_vs_step",
            f"{CLAIMS}:instant_decay_temporary",
            ("decay_equilibrium",),
        ),
        Claim(
            "decay_target_same_equilibrium",
            "Li, Lyu & Arora 2020",
            "A step decay of the LR and the same decay of the WD (equal intrinsic LR "
            "after it) reach the same equilibrium in function space.",
            "texp_vs_step",
            f"{CLAIMS}:decay_target_same_equilibrium",
            ("decay_equilibrium",),
        ),
    ),
)
