rule plot_training_curves:
    input:
        figure_experiment_runs("training_curves"),
    output:
        png=report(
            "results/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Foundation",
            labels={"figure": "training curves"},
        ),
        pdf="results/figures/training_curves.pdf",
    log:
        "results/logs/figures/training_curves.log",
    conda:
        "../../environment.yml"
    params:
        titles=experiment_titles("training_curves"),
    script:
        "../scripts/plot_figure.py"


rule plot_explr_equivalence:
    input:
        "results/analysis/explr_equivalence.nc",
    output:
        png=report(
            "results/figures/explr_equivalence.png",
            caption="../report/explr_equivalence.rst",
            category="Exponential LR (Li & Arora 2020)",
            labels={"figure": "equivalence"},
        ),
        pdf="results/figures/explr_equivalence.pdf",
    log:
        "results/logs/figures/explr_equivalence.log",
    conda:
        "../../environment.yml"
    params:
        titles=experiment_titles("explr_equivalence"),
    script:
        "../scripts/plot_figure.py"


rule plot_explr_weight_norm:
    input:
        figure_experiment_runs("explr_weight_norm"),
    output:
        png=report(
            "results/figures/explr_weight_norm.png",
            caption="../report/explr_weight_norm.rst",
            category="Exponential LR (Li & Arora 2020)",
            labels={"figure": "weight norm"},
        ),
        pdf="results/figures/explr_weight_norm.pdf",
    log:
        "results/logs/figures/explr_weight_norm.log",
    conda:
        "../../environment.yml"
    params:
        titles=experiment_titles("explr_weight_norm"),
    script:
        "../scripts/plot_figure.py"


rule plot_texp_vs_step:
    input:
        figure_experiment_runs("texp_vs_step"),
    output:
        png=report(
            "results/figures/texp_vs_step.png",
            caption="../report/texp_vs_step.rst",
            category="Exponential LR (Li & Arora 2020)",
            labels={"figure": "TEXP vs step decay"},
        ),
        pdf="results/figures/texp_vs_step.pdf",
    log:
        "results/logs/figures/texp_vs_step.log",
    conda:
        "../../environment.yml"
    params:
        titles=experiment_titles("texp_vs_step"),
    script:
        "../scripts/plot_figure.py"
