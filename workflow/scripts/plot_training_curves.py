"""Snakemake script of rule plot_training_curves."""

from lrdynamics.logs import setup_logging
from lrdynamics.plotting import plot_training_curves
from lrdynamics.record import open_runs

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
plot_training_curves(
    open_runs(snakemake.input),  # noqa: F821
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    title=snakemake.params.title,  # noqa: F821
)
