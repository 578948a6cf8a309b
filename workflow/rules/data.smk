rule prepare_dataset:
    output:
        train=f"{DATA_DIR}/{{dataset}}/train.pt",
        test=f"{DATA_DIR}/{{dataset}}/test.pt",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    # cheap: runs where Snakemake runs (the login node under SLURM)
    localrule: True
    conda:
        "../../environment.yml"
    params:
        spec=dataset_spec,
    script:
        "../scripts/prepare_dataset.py"
