"""The intrinsic LR and equilibrium (Li, Lyu & Arora, NeurIPS 2020; docs/science.md
section 3): SGD with weight decay on a normalized net equilibrates at a rate set by the
intrinsic LR eta*lambda/(1-gamma); histories that end with the same LR and WD reach the
same equilibrium; GD with WD on a scale-invariant loss never settles.

The analyses are ``equilibrium`` and ``toy``; the figures ``lrdynamics.figures.intrinsic_lr``.
"""

from lrdynamics.studies.catalog import Analysis, Figure, Study

REFERENCE = (
    "Li, Lyu & Arora, Reconciling Modern Deep Learning with Traditional Optimization Analyses: "
    "The Intrinsic Learning Rate, NeurIPS 2020"
)
FIGURES = "lrdynamics.figures.intrinsic_lr"

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
        Figure("small_lr_generalization", f"{FIGURES}:plot_small_lr_generalization", reads_runs=True),
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
    ),
)
