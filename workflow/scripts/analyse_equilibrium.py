"""Snakemake script of rule analyse_equilibrium."""

import logging

from lrdynamics.equilibrium import equilibrium_analysis
from lrdynamics.logs import setup_logging
from lrdynamics.record import open_runs, write_atomic

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
log = logging.getLogger("lrdynamics.equilibrium")
histories_runs = open_runs(snakemake.input.histories)  # noqa: F821
histories = {
    name: [ds for ds in histories_runs if ds.attrs["experiment"] == name]
    for name in snakemake.params.histories  # noqa: F821
}
scaling = open_runs(snakemake.input.scaling)  # noqa: F821
# every run once, in input order
paths = list(dict.fromkeys([*snakemake.input.histories, *snakemake.input.scaling, *snakemake.input.angular]))  # noqa: F821
settings = snakemake.params.settings  # noqa: F821
analysis = equilibrium_analysis(
    histories,
    scaling,
    open_runs(paths),
    metric=settings.get("metric", "total_effective_lr"),
    tolerance=settings.get("tolerance", 0.1),
    final_fraction=settings.get("final_fraction", 0.2),
)
write_atomic(analysis, snakemake.output[0])  # noqa: F821
if "slope" in analysis:
    log.info(
        "slope %.3f (95%% CI %.3f .. %.3f); predicted -1",
        float(analysis.slope),
        float(analysis.slope_ci_low),
        float(analysis.slope_ci_high),
    )
ratio = analysis.angular_update_measured / analysis.angular_update_predicted
for run_id, r, reached in zip(analysis.run_id.values, ratio.values, analysis.reached_equilibrium.values):
    log.info("%s: angular update measured/predicted %.3f (equilibrium reached: %s)", run_id, r, bool(reached))
