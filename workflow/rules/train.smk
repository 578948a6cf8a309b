rule train:
    input:
        unpack(run_dataset_files),
    output:
        f"{RESULTS}/runs/{{experiment}}/{{run}}.nc",
    log:
        f"{RESULTS}/logs/train/{{experiment}}/{{run}}.log",
    wildcard_constraints:
        experiment=experiment_name_pattern("experiments"),
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


# Full-batch GD runs (gd_experiments): the same job (lrdynamics.engine.job picks the GD
# trainer from the run), its own rule so that clusters can size it apart.
use rule train as train_gd with:
    wildcard_constraints:
        experiment=experiment_name_pattern("gd_experiments"),
