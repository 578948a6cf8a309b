# One rule per analysis file of the study catalog (lrdynamics.studies.ANALYSES), generated:
# what an analysis reads and computes is its catalog entry. Analyses are cheap: every
# rule here is a localrule (it runs where Snakemake runs, the login node under SLURM).
for analysis in ANALYSES:

    rule:
        name:
            f"analyse_{analysis}"
        input:
            **layout.analysis_inputs(CONFIG, analysis),
        output:
            layout.analysis_path(CONFIG, analysis),
        log:
            f"{RESULTS}/logs/analysis/{analysis}.log",
        localrule: True
        conda:
            "../../environment.yml"
        params:
            # rule params: a changed setting, or a new order of the experiments (the first
            # history is the reference), redoes the analysis
            settings=layout.analysis_settings(CONFIG, analysis),
            experiments=layout.analysis_experiments(CONFIG, analysis),
            rehearsal=REHEARSAL,
        script:
            "../scripts/analyse.py"


# <results>/<experiment>.nc: all runs of an experiment in one hypercube (xr.open_dataset).
rule combine_experiment:
    input:
        experiment_run_files,
    output:
        f"{RESULTS}/{{experiment}}.nc",
    log:
        f"{RESULTS}/logs/combine/{{experiment}}.log",
    wildcard_constraints:
        experiment=experiment_name_pattern("experiments", "gd_experiments"),
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/combine_experiment.py"
