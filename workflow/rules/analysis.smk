rule analyse_explr_equivalence:
    input:
        figure_experiment_runs("explr_equivalence"),
    output:
        "results/analysis/explr_equivalence.nc",
    log:
        "results/logs/analysis/explr_equivalence.log",
    conda:
        "../../environment.yml"
    script:
        "../scripts/analyse_explr_equivalence.py"
