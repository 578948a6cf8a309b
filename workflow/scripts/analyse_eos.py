"""Snakemake script of rule analyse_eos: GD runs -> results/analysis/eos.nc."""

import logging

from lrdynamics.eos import OUTCOMES, eos_analysis
from lrdynamics.logs import setup_logging
from lrdynamics.record import open_runs, write_atomic

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
settings = snakemake.params.settings  # noqa: F821
ds = eos_analysis(open_runs(snakemake.input), **settings)  # noqa: F821
for i in range(ds.sizes.get("run", 0)):
    r = ds.isel(run=i)
    logging.getLogger("lrdynamics.eos").info(
        "%s: S0 %.4g, 2/lr %.4g, late sharpness/(2/lr) %.3f, spike %.3g, balance %.3g -> %.3g, %s",
        r.run.item(), r.initial_sharpness, r.two_over_lr, r.late_sharpness_ratio, r.spike_height,
        r.initial_balance, r.final_balance, OUTCOMES[int(r.outcome)],
    )  # fmt: skip
write_atomic(ds, snakemake.output[0])  # noqa: F821
