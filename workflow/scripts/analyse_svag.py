"""Snakemake script of rule analyse_svag."""

import logging

from lrdynamics.logs import setup_logging
from lrdynamics.record import open_runs, write_atomic
from lrdynamics.svag import svag_analysis

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
log = logging.getLogger("lrdynamics.svag")
analysis = svag_analysis(open_runs(snakemake.input))  # noqa: F821
write_atomic(analysis, snakemake.output[0])  # noqa: F821
for l, d, final in zip(
    analysis.l.values, analysis.test_accuracy_distance.values, analysis.final_test_accuracy_distance.values
):
    log.info("l=%d: test accuracy distance from l=%d: mean %.4f, final %.4f", l, analysis.reference_l, d, final)
