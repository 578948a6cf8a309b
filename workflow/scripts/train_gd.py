"""Snakemake script of rule train_gd: one resolved full-batch GD run config -> one netCDF
file (lrdynamics.gd). A job stopped by a signal saves its resume state and fails, so a
rerun continues it."""

import json

from lrdynamics.config import engine_settings
from lrdynamics.gd import train_gd
from lrdynamics.logs import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
settings = engine_settings(snakemake.config)  # noqa: F821
train_gd(
    json.loads(snakemake.params.run_json),  # noqa: F821
    snakemake.output[0],  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    jobs_per_gpu=settings["jobs_per_gpu"],
    checkpoint_every_updates=settings["checkpoint"]["every_updates"],
    checkpoint_every_seconds=settings["checkpoint"]["every_seconds"],
)
