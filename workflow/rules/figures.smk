# One plot rule per figure of the study catalog (lrdynamics.studies.FIGURES), generated:
# what a figure reads and which function draws it is its catalog entry.
for figure, entry in FIGURES.items():

    rule:
        name:
            f"plot_{figure}"
        input:
            runs=layout.figure_run_paths(CONFIG, figure) if entry.reads_runs else [],
            analysis=[
                layout.analysis_path(CONFIG, name)
                for name in layout.figure_analyses(CONFIG, figure)
            ],
        output:
            png=report(
                f"{RESULTS}/figures/{figure}.png",
                caption=f"../report/{figure}.rst",
                category=CATEGORY[figure],
                labels=layout.figure_labels(CONFIG, figure),
            ),
            pdf=f"{RESULTS}/figures/{figure}.pdf",
        log:
            f"{RESULTS}/logs/figures/{figure}.log",
        localrule: True
        conda:
            "../../environment.yml"
        params:
            titles=layout.experiment_titles(CONFIG, figure),
            # shown in the report caption (a changed config redraws the figure anyway)
            provenance=layout.figure_provenance(CONFIG, figure),
            rehearsal=REHEARSAL,
        script:
            "../scripts/plot_figure.py"
