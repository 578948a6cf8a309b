# lrdynamics: LR, weight decay and gradient noise in normalized nets.
# `snakemake --cores 2` draws every figure of config/config.yaml (the demo);
# `snakemake --configfile config/paper.yaml ...` runs the paper-scale grid.
from snakemake.utils import min_version

min_version("9.20")


# The demo config, unless config files are named on the command line: Snakemake would
# otherwise deep-merge them into it (demo experiments leaking into a paper-scale run).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"


rule all:
    default_target: True
    input:
        all_figures(),
        all_analyses(),
        f"{RESULTS}/claims.csv",
        all_runs(),
        all_experiment_datasets(),
    localrule: True
