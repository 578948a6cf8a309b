"""Snakemake script of every analysis rule: the analysis's catalog entry
(``lrdynamics.studies.ANALYSES``) names the function that computes it from its runs."""

import logging
from pathlib import Path

from lrdynamics.engine.logs import setup_logging
from lrdynamics.engine.runfile import open_runs, write_atomic
from lrdynamics.studies import ANALYSES, load

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
analysis = ANALYSES[Path(snakemake.output[0]).stem]  # noqa: F821
groups = {group: open_runs(getattr(snakemake.input, group)) for group in analysis.inputs}  # noqa: F821
ds = load(analysis.compute)(**groups, **snakemake.params.settings)  # noqa: F821
if snakemake.params.rehearsal:  # noqa: F821 (a rehearsal's analysis is marked as one)
    ds.attrs["rehearsal"] = snakemake.params.rehearsal  # noqa: F821
write_atomic(ds, snakemake.output[0])  # noqa: F821
log = logging.getLogger(f"lrdynamics.analysis.{analysis.name}")
for line in load(analysis.summary)(ds) if analysis.summary else []:
    log.info("%s", line)
