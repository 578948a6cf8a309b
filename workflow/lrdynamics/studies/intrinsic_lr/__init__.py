"""The intrinsic LR and equilibrium (Li, Lyu & Arora, NeurIPS 2020; docs/science.md
section 3): SGD with weight decay on a normalized net equilibrates at a rate set by the
intrinsic LR eta*lambda/(1-gamma); histories that end with the same LR and WD reach the
same equilibrium; GD with WD on a scale-invariant loss never settles.

The analyses are ``equilibrium``, ``small_lr`` and ``toy``; the figures
``lrdynamics.figures.intrinsic_lr``; the claims are measured in ``claims``.
"""

from lrdynamics.studies.catalog import Analysis, Claim, Figure, Study

REFERENCE = (
    "Li, Lyu & Arora, Reconciling Modern Deep Learning with Traditional Optimization Analyses: "
    "The Intrinsic Learning Rate, NeurIPS 2020"
)
FIGURES = "lrdynamics.figures.intrinsic_lr"
CLAIMS = "lrdynamics.studies.intrinsic_lr.claims"
PAPER = "Li, Lyu & Arora 2020"

STUDY = Study(
    name="intrinsic_lr",
    category="Intrinsic LR (Li, Lyu & Arora 2020)",
    figures=(
        Figure(
            "intrinsic_lr_equilibrium",
            f"{FIGURES}:plot_intrinsic_lr_equilibrium",
            analyses=("equilibrium",),
            reads_runs=True,
        ),
        Figure(
            "equilibrium_time_scaling",
            f"{FIGURES}:plot_equilibrium_time_scaling",
            analyses=("equilibrium",),
            reads_runs=True,
        ),
        Figure("random_schedules_equilibrium", f"{FIGURES}:plot_random_schedules_equilibrium", reads_runs=True),
        Figure(
            "small_lr_generalization",
            f"{FIGURES}:plot_small_lr_generalization",
            analyses=("small_lr",),
            reads_runs=True,
        ),
        Figure("angular_update", f"{FIGURES}:plot_angular_update", analyses=("equilibrium",)),
        Figure("scale_invariant_toy", f"{FIGURES}:plot_scale_invariant_toy", analyses=("scale_invariant_toy",)),
    ),
    analyses=(
        Analysis(
            "equilibrium",
            "lrdynamics.studies.intrinsic_lr.equilibrium:equilibrium_analysis",
            inputs={
                "histories": ("intrinsic_lr_equilibrium",),
                "scaling": ("equilibrium_time_scaling",),
                "angular": ("angular_update",),
            },
            settings=("equilibrium_time_scaling",),
            summary="lrdynamics.studies.intrinsic_lr.equilibrium:summary",
        ),
        Analysis(
            "scale_invariant_toy",
            "lrdynamics.studies.intrinsic_lr.toy:scale_invariant_dataset",
            settings=("scale_invariant_toy",),
        ),
        Analysis(
            "small_lr",
            "lrdynamics.studies.intrinsic_lr.small_lr:small_lr_analysis",
            inputs={"runs": ("small_lr_generalization",)},
            summary="lrdynamics.studies.intrinsic_lr.small_lr:summary",
        ),
    ),
    claims=(
        Claim(
            "scale_invariant_toy",
            PAPER,
            "GD with WD on x^2/(x^2+y^2) never settles, while GD without WD converges.",
            "scale_invariant_toy",
            f"{CLAIMS}:scale_invariant_toy",
            ("scale_invariant_toy",),
        ),
        Claim(
            "angular_update",
            PAPER,
            "At equilibrium the angular update per step is sqrt(2 eta lambda/(1+gamma)) "
            "(the norm-balance identities are its consistency checks).",
            "angular_update",
            f"{CLAIMS}:angular_update",
            ("equilibrium",),
            "sqrt(2 eta lambda/(1+gamma))",
        ),
        Claim(
            "equilibrium_norm",
            PAPER,
            "At equilibrium |w| is the SDE's noise-trace prediction (eta/(1-gamma) |w|^2 tr Sigma_B/(2 lambda))^(1/4).",
            "angular_update",
            f"{CLAIMS}:equilibrium_norm",
            ("equilibrium",),
        ),
        Claim(
            "fast_equilibrium_scaling",
            PAPER,
            "Time to equilibrium in function space scales as 1/(eta "
            "lambda): log-log slope -1 against the intrinsic LR.",
            "equilibrium_time_scaling",
            f"{CLAIMS}:function_space_time_scaling",
            ("equilibrium",),
            "O~(1/(eta lambda)) steps",
        ),
        Claim(
            "histories_same_equilibrium",
            PAPER,
            "LR/WD histories that end with the same LR and WD reach the same equilibrium in function space.",
            "intrinsic_lr_equilibrium",
            f"{CLAIMS}:histories_same_equilibrium",
            ("equilibrium",),
            "MNIST: 3 schedules meet after epoch 81",
        ),
        Claim(
            "small_lr_reaches_standard",
            PAPER,
            "A 100x smaller initial LR reaches the standard LR's test accuracy, given enough steps.",
            "small_lr_generalization",
            f"{CLAIMS}:small_lr_reaches_standard",
            ("small_lr",),
            "matches after one extra decay, ~10x the epochs",
        ),
    ),
)
