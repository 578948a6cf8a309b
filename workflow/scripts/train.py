"""Snakemake script of rule train: one resolved run config -> one netCDF file."""

import json

from lrdynamics.logs import setup_logging
from lrdynamics.train import train

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
train(json.loads(snakemake.params.run_json), snakemake.output[0], threads=snakemake.threads)  # noqa: F821
