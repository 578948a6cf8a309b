rule train:
    input:
        unpack(run_dataset_files),
    output:
        "results/runs/{experiment}/{run}.nc",
    params:
        run_json=run_json,
    threads: CONFIG["train_threads"]
    resources:
        runtime="12h",
    log:
        "results/logs/train/{experiment}/{run}.log",
    script:
        "../scripts/train.py"
