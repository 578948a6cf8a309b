# Analyses, toys and the per-experiment files are cheap: every rule here is a localrule
# (it runs where Snakemake runs, the login node under SLURM, not as a cluster job).
rule analyse_explr_equivalence:
    input:
        figure_experiment_runs("explr_equivalence"),
    output:
        "results/analysis/explr_equivalence.nc",
    log:
        "results/logs/analysis/explr_equivalence.log",
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/analyse_explr_equivalence.py"


rule analyse_equilibrium:
    input:
        histories=figure_experiment_runs("intrinsic_lr_equilibrium"),
        scaling=figure_experiment_runs("equilibrium_time_scaling"),
        angular=figure_experiment_runs("angular_update"),
    output:
        "results/analysis/equilibrium.nc",
    log:
        "results/logs/analysis/equilibrium.log",
    localrule: True
    conda:
        "../../environment.yml"
    params:
        histories=figure_experiment_list("intrinsic_lr_equilibrium"),
        settings=figure_settings("equilibrium_time_scaling"),
    script:
        "../scripts/analyse_equilibrium.py"


rule toy_scale_invariant:
    output:
        "results/analysis/scale_invariant_toy.nc",
    log:
        "results/logs/analysis/scale_invariant_toy.log",
    localrule: True
    conda:
        "../../environment.yml"
    params:
        settings=figure_settings("scale_invariant_toy"),
    script:
        "../scripts/toy_scale_invariant.py"


rule analyse_svag:
    input:
        figure_experiment_runs("svag_convergence"),
    output:
        "results/analysis/svag.nc",
    log:
        "results/logs/analysis/svag.log",
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/analyse_svag.py"


rule analyse_lsr:
    input:
        lsr_runs,
    output:
        "results/analysis/lsr.nc",
    log:
        "results/logs/analysis/lsr.log",
    localrule: True
    conda:
        "../../environment.yml"
    params:
        experiments=lsr_experiments(),
        late_fraction=figure_settings("lsr_validity").get("late_fraction", 0.5),
    script:
        "../scripts/analyse_lsr.py"


rule analyse_adaptive:
    input:
        scaling=figure_experiment_runs("adaptive_sqrt_scaling"),
        svag=figure_experiment_runs("adaptive_svag"),
    output:
        "results/analysis/adaptive.nc",
    log:
        "results/logs/analysis/adaptive.log",
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/analyse_adaptive.py"


rule analyse_eos:
    input:
        eos_runs,
    output:
        "results/analysis/eos.nc",
    log:
        "results/logs/analysis/eos.log",
    localrule: True
    conda:
        "../../environment.yml"
    params:
        settings=eos_settings(),
    script:
        "../scripts/analyse_eos.py"


rule toy_catapult:
    output:
        "results/analysis/catapult_toy.nc",
    log:
        "results/logs/analysis/catapult_toy.log",
    localrule: True
    conda:
        "../../environment.yml"
    params:
        settings=figure_settings("catapult"),
    script:
        "../scripts/toy_catapult.py"


rule toy_balancing:
    output:
        "results/analysis/balancing_toy.nc",
    log:
        "results/logs/analysis/balancing_toy.log",
    localrule: True
    conda:
        "../../environment.yml"
    params:
        settings=toy_balancing_settings(),
    script:
        "../scripts/toy_balancing.py"


# results/<experiment>.nc: all runs of an experiment in one hypercube (xr.open_dataset).
rule combine_experiment:
    input:
        experiment_run_files,
    output:
        "results/{experiment}.nc",
    log:
        "results/logs/combine/{experiment}.log",
    wildcard_constraints:
        experiment=experiment_name_pattern("experiments", "gd_experiments"),
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/combine_experiment.py"
