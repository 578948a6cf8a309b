rule plot_training_curves:
    input:
        figure_runs("training_curves"),
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
        title=figure_title("training_curves"),
    script:
        "../scripts/plot_training_curves.py"
