"""Snakemake script of rule analyse_explr_equivalence."""

import logging

from lrdynamics.equivalence import explr_equivalence
from lrdynamics.logs import setup_logging
from lrdynamics.record import open_runs, write_atomic

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
analysis = explr_equivalence(open_runs(snakemake.input))  # noqa: F821
write_atomic(analysis, snakemake.output[0])  # noqa: F821
for pair in analysis.pair.values:
    p = analysis.sel(pair=pair)
    logging.getLogger("lrdynamics.equivalence").info(
        "%s: max logit diff %.3g, chaos floor %.3g, within criterion: %s",
        pair,
        float(p.max_abs_logit_diff.max()),
        float(p.chaos_floor_logit_diff.max()),
        bool(p.within_chaos_criterion),
    )
