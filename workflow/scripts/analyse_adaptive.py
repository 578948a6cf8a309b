"""Snakemake script of rule analyse_adaptive."""

import logging

import numpy as np

from lrdynamics.adaptive_analysis import adaptive_analysis
from lrdynamics.logs import setup_logging
from lrdynamics.record import open_runs, write_atomic

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
log = logging.getLogger("lrdynamics.adaptive")
analysis = adaptive_analysis(open_runs(snakemake.input.scaling), open_runs(snakemake.input.svag))  # noqa: F821
write_atomic(analysis, snakemake.output[0])  # noqa: F821
if "final_test_accuracy" in analysis:
    for opt in analysis.optimizer.values:
        for rule in analysis.scaling_rule.values:
            d = analysis.sel(optimizer=opt, scaling_rule=rule)
            finals = ", ".join(f"kappa={k:g}: {a:.4f}" for k, a in zip(d.kappa.values, d.final_test_accuracy.values))
            log.info("%s, %s rule: final test accuracy %s; spread %.4f; mean curve distance from kappa=%g: %.4f",
                     opt, rule, finals, float(d.final_test_accuracy_spread), d.kappa.values[0],
                     float(d.mean_test_accuracy_curve_distance))  # fmt: skip
if "svag_test_accuracy_distance" in analysis:
    for opt in analysis.optimizer.values:
        d = analysis.sel(optimizer=opt)
        for l, dist in zip(d.l.values, d.svag_test_accuracy_distance.values):
            if np.isfinite(dist):
                log.info("%s, l=%d: mean test accuracy distance from l=%d: %.4f", opt, l, int(d.svag_reference_l), dist)
