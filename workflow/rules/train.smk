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
    params:
        run_json=run_json,
    script:
        "../scripts/train.py"
