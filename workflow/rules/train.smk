rule train:
    input:
        unpack(run_dataset_files),
    output:
        "results/runs/{experiment}/{run}.nc",
    log:
        "results/logs/train/{experiment}/{run}.log",
    conda:
        "../../environment.yml"
    threads: CONFIG["train_threads"]
    resources:
        runtime="12h",
        # 1 unless device is cpu: the SLURM executor requests a GPU per job; locally
        # `--resources gpu=N` caps the training jobs running at once.
        gpu=TRAIN_GPUS,
    params:
        run_json=run_json,
    script:
        "../scripts/train.py"
