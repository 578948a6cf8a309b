"""Snakemake script of rules train and train_gd: one resolved run config -> one netCDF
file (``lrdynamics.engine.job.train``). A job stopped by a signal saves its resume state
and fails (``Interrupted``), so Snakemake's retries (or a rerun) continue it."""

import json

from lrdynamics.config import engine_settings
from lrdynamics.engine.job import train
from lrdynamics.engine.logs import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
settings = engine_settings(snakemake.config)  # noqa: F821
train(
    json.loads(snakemake.params.run_json),  # noqa: F821
    snakemake.output[0],  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    jobs_per_gpu=settings["jobs_per_gpu"],
    checkpoint_every_updates=settings["checkpoint"]["every_updates"],
    checkpoint_every_seconds=settings["checkpoint"]["every_seconds"],
)
