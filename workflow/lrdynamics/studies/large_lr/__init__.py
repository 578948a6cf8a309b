"""Large-LR implicit biases (Wang, Xu, Zhao & Tao 2023, with Cohen et al. 2021, Lewkowycz
et al. 2020 and Wang, Chen, Zhao & Tao 2022; docs/science.md section 6): with a large LR,
GD on objectives of good regularity moves to flatter regions (edge of stability,
catapult, balancing); with bad regularity it diverges.

The analyses are ``eos`` (full-batch GD runs), ``catapult`` and ``balancing`` (toys);
the figures ``lrdynamics.figures.large_lr``.
"""

from lrdynamics.studies.catalog import Analysis, Claim, Figure, Study

REFERENCE = (
    "Wang, Xu, Zhao & Tao, Good regularity creates large learning rate implicit biases: "
    "edge of stability, balancing, and catapult, 2023"
)
FIGURES = "lrdynamics.figures.large_lr"
GD = "gd_experiments"
CLAIMS = "lrdynamics.studies.large_lr.claims"

STUDY = Study(
    name="large_lr",
    category="Large-LR implicit biases (Wang, Xu, Zhao & Tao 2023)",
    figures=(
        Figure("edge_of_stability", f"{FIGURES}:plot_edge_of_stability", analyses=("eos",), section=GD),
        Figure("catapult", f"{FIGURES}:plot_catapult", analyses=("catapult_toy",)),
        Figure(
            "balancing",
            f"{FIGURES}:plot_balancing",
            analyses=("balancing_toy",),
            experiment_analyses=("eos",),
            section=GD,
        ),
        Figure("regularity", f"{FIGURES}:plot_regularity", analyses=("eos",), section=GD),
    ),
    analyses=(
        Analysis(
            "eos",
            "lrdynamics.studies.large_lr.eos:eos_analysis",
            inputs={"runs": ("edge_of_stability", "regularity", "balancing")},
            settings=("edge_of_stability", "regularity"),
            summary="lrdynamics.studies.large_lr.eos:summary",
        ),
        Analysis("catapult_toy", "lrdynamics.studies.large_lr.catapult:catapult_dataset", settings=("catapult",)),
        Analysis("balancing_toy", "lrdynamics.studies.large_lr.balancing:balancing_dataset", settings=("balancing",)),
    ),
    claims=(
        Claim(
            "edge_of_stability",
            "Cohen et al. 2021",
            "Full-batch GD sharpens progressively until the sharpness reaches "
            "2/eta, then hovers there (edge of stability).",
            "edge_of_stability",
            f"{CLAIMS}:edge_of_stability",
            ("eos",),
            "fc-tanh: ~205 vs 2/eta = 200",
        ),
        Claim(
            "catapult",
            "Lewkowycz et al. 2020",
            "The two-layer toy catapults for 2 < eta lambda0 < 4 and diverges above 4.",
            "catapult",
            f"{CLAIMS}:catapult",
            ("catapult_toy",),
            "2 < eta lambda0 < 4",
        ),
        Claim(
            "balancing",
            "Wang, Chen, Zhao & Tao 2022",
            "GD with a large step (2/L0 < h < 4/L0) on the factorization toy balances the two factors.",
            "balancing",
            f"{CLAIMS}:balancing",
            ("balancing_toy",),
        ),
        Claim(
            "regularity",
            "Wang, Xu, Zhao & Tao 2023",
            "Good regularity (Huber loss, tanh, BN) gives catapult and edge of stability "
            "under a large LR, where bad regularity (MSE with ReLU) diverges.",
            "regularity",
            f"{CLAIMS}:regularity",
            ("eos",),
        ),
    ),
)
