rule prepare_dataset:
    output:
        train=f"{DATA_DIR}/{{dataset}}/train.pt",
        test=f"{DATA_DIR}/{{dataset}}/test.pt",
    params:
        spec=dataset_spec,
        data_dir=DATA_DIR,
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    script:
        "../scripts/prepare_dataset.py"
