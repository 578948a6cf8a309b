# One plot rule per figure, generated: what differs is the data a figure reads.
# figure: (report category, reads the runs of its experiments); the analysis files a
# figure reads are FIGURE_ANALYSES in common.smk.
FIGURE_RULES = {
    "training_curves": ("Foundation", True),
    "explr_equivalence": ("Exponential LR (Li & Arora 2020)", False),
    "explr_weight_norm": ("Exponential LR (Li & Arora 2020)", True),
    "texp_vs_step": ("Exponential LR (Li & Arora 2020)", True),
    "intrinsic_lr_equilibrium": ("Intrinsic LR (Li, Lyu & Arora 2020)", True),
    "equilibrium_time_scaling": ("Intrinsic LR (Li, Lyu & Arora 2020)", True),
    "small_lr_generalization": ("Intrinsic LR (Li, Lyu & Arora 2020)", True),
    "angular_update": ("Intrinsic LR (Li, Lyu & Arora 2020)", False),
    "scale_invariant_toy": ("Intrinsic LR (Li, Lyu & Arora 2020)", False),
    "svag_convergence": ("SVAG and the SDE (Li, Malladi & Arora 2021)", False),
    "lsr_validity": ("SVAG and the SDE (Li, Malladi & Arora 2021)", False),
    "noise_signal": ("SVAG and the SDE (Li, Malladi & Arora 2021)", False),
    "adaptive_sqrt_scaling": ("Adaptive methods (Malladi et al. 2022)", False),
    "adaptive_svag": ("Adaptive methods (Malladi et al. 2022)", False),
    "edge_of_stability": (
        "Large-LR implicit biases (Wang, Xu, Zhao & Tao 2023)",
        False,
    ),
    "catapult": ("Large-LR implicit biases (Wang, Xu, Zhao & Tao 2023)", False),
    "balancing": ("Large-LR implicit biases (Wang, Xu, Zhao & Tao 2023)", False),
    "regularity": ("Large-LR implicit biases (Wang, Xu, Zhao & Tao 2023)", False),
}

for figure, (category, reads_runs) in FIGURE_RULES.items():

    rule:
        name:
            f"plot_{figure}"
        input:
            runs=figure_experiment_runs(figure) if reads_runs else [],
            analysis=figure_analysis_files(figure),
        output:
            png=report(
                f"results/figures/{figure}.png",
                caption=f"../report/{figure}.rst",
                category=category,
                labels=figure_labels(figure),
            ),
            pdf=f"results/figures/{figure}.pdf",
        log:
            f"results/logs/figures/{figure}.log",
        localrule: True
        conda:
            "../../environment.yml"
        params:
            titles=experiment_titles(figure),
            # shown in the report caption (a changed config redraws the figure anyway)
            provenance=figure_provenance(figure),
        script:
            "../scripts/plot_figure.py"
