"""Snakemake script of rule train: one resolved run config -> one netCDF file."""

import json

from lrdynamics.logs import setup_logging
from lrdynamics.train import train

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
train(
    json.loads(snakemake.params.run_json),  # noqa: F821
    snakemake.output[0],  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    jobs_per_gpu=snakemake.params.jobs_per_gpu,  # noqa: F821
)
