# Dataset preparation is a localrule: it runs where Snakemake runs (the login node under
# SLURM), which is where downloads can reach the internet.
rule prepare_dataset:
    output:
        train=f"{PREPARED_DIR}/{{dataset}}/train.pt",
        test=f"{PREPARED_DIR}/{{dataset}}/test.pt",
    log:
        f"{RESULTS}/logs/prepare_dataset/{{dataset}}.log",
    localrule: True
    conda:
        "../../environment.yml"
    params:
        spec=dataset_spec,
        # where the raw files are looked for (a rehearsal prepares into <data_dir>/rehearsal/)
        data_dir=lambda wildcards: DATA_DIR,
    script:
        "../scripts/prepare_dataset.py"
