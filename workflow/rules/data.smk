# Dataset preparation is a localrule: it runs where Snakemake runs (the login node under
# SLURM), which is where downloads can reach the internet.
rule prepare_dataset:
    output:
        train=f"{DATA_DIR}/{{dataset}}/train.pt",
        test=f"{DATA_DIR}/{{dataset}}/test.pt",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    localrule: True
    conda:
        "../../environment.yml"
    params:
        spec=dataset_spec,
    script:
        "../scripts/prepare_dataset.py"
