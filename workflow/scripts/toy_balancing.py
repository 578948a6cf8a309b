"""Snakemake script of rule toy_balancing: the balancing toy over its grid (numpy, seconds)."""

from lrdynamics.balancing import balancing_dataset
from lrdynamics.logs import setup_logging
from lrdynamics.record import write_atomic

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
write_atomic(balancing_dataset(snakemake.params.settings), snakemake.output[0])  # noqa: F821
