"""Snakemake script of rule toy_catapult: the catapult toy over its grid (numpy, seconds)."""

from lrdynamics.catapult import catapult_dataset
from lrdynamics.logs import setup_logging
from lrdynamics.record import write_atomic

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
write_atomic(catapult_dataset(snakemake.params.settings), snakemake.output[0])  # noqa: F821
