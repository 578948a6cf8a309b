# One plot rule per figure, generated: what differs is the data a figure reads.
# figure: (report category, analysis file it reads or None, reads the runs of its experiments)
FIGURE_RULES = {
    "training_curves": ("Foundation", None, True),
    "explr_equivalence": (
        "Exponential LR (Li & Arora 2020)",
        "explr_equivalence",
        False,
    ),
    "explr_weight_norm": ("Exponential LR (Li & Arora 2020)", None, True),
    "texp_vs_step": ("Exponential LR (Li & Arora 2020)", None, True),
    "intrinsic_lr_equilibrium": (
        "Intrinsic LR (Li, Lyu & Arora 2020)",
        "equilibrium",
        True,
    ),
    "equilibrium_time_scaling": (
        "Intrinsic LR (Li, Lyu & Arora 2020)",
        "equilibrium",
        True,
    ),
    "small_lr_generalization": ("Intrinsic LR (Li, Lyu & Arora 2020)", None, True),
    "angular_update": ("Intrinsic LR (Li, Lyu & Arora 2020)", "equilibrium", False),
    "scale_invariant_toy": (
        "Intrinsic LR (Li, Lyu & Arora 2020)",
        "scale_invariant_toy",
        False,
    ),
    "svag_convergence": ("SVAG and the SDE (Li, Malladi & Arora 2021)", "svag", False),
    "lsr_validity": ("SVAG and the SDE (Li, Malladi & Arora 2021)", "lsr", False),
    "noise_signal": ("SVAG and the SDE (Li, Malladi & Arora 2021)", "lsr", False),
    "adaptive_sqrt_scaling": (
        "Adaptive methods (Malladi et al. 2022)",
        "adaptive",
        False,
    ),
    "adaptive_svag": ("Adaptive methods (Malladi et al. 2022)", "adaptive", False),
}

for figure, (category, analysis, reads_runs) in FIGURE_RULES.items():

    rule:
        name:
            f"plot_{figure}"
        input:
            runs=figure_experiment_runs(figure) if reads_runs else [],
            analysis=[f"results/analysis/{analysis}.nc"] if analysis else [],
        output:
            png=report(
                f"results/figures/{figure}.png",
                caption=f"../report/{figure}.rst",
                category=category,
                labels={"figure": figure.replace("_", " ")},
            ),
            pdf=f"results/figures/{figure}.pdf",
        log:
            f"results/logs/figures/{figure}.log",
        conda:
            "../../environment.yml"
        params:
            titles=experiment_titles(figure),
        script:
            "../scripts/plot_figure.py"
