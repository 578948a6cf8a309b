"""Snakemake script of rule analyse_lsr."""

import logging

from lrdynamics.gradient_noise import lsr_analysis
from lrdynamics.logs import setup_logging
from lrdynamics.record import open_runs, write_atomic

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
log = logging.getLogger("lrdynamics.gradient_noise")
runs = open_runs(snakemake.input)  # noqa: F821
experiments = {
    name: [ds for ds in runs if ds.attrs["experiment"] == name]
    for name in snakemake.params.experiments  # noqa: F821
}
analysis = lsr_analysis(experiments, late_fraction=snakemake.params.late_fraction)  # noqa: F821
write_atomic(analysis, snakemake.output[0])  # noqa: F821
for name in analysis.experiment.values:
    exp = analysis.sel(experiment=name)
    log.info("%s: predicted critical batch size %.1f", name, float(exp.predicted_critical_batch_size))
    for b, acc in zip(exp.batch_size.values, exp.final_test_accuracy.values):
        log.info("%s: B=%d final test accuracy %.4f", name, b, acc)
