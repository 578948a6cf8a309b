"""Snakemake script of rule prepare_dataset: raw files -> <data_dir>/<name>/{train,test}.pt
(a rehearsal's: <data_dir>/rehearsal/<name>/)."""

import logging
from pathlib import Path

from lrdynamics.engine.data import DatasetError, prepare_dataset
from lrdynamics.engine.logs import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
log = logging.getLogger("lrdynamics.prepare_dataset")
try:
    summary = prepare_dataset(
        snakemake.params.spec,  # noqa: F821
        Path(snakemake.params.data_dir),  # noqa: F821 (the raw files are looked for here)
        Path(snakemake.output.train).parent,  # noqa: F821
    )
except DatasetError as err:
    log.error("%s", err)
    raise SystemExit(1) from None
log.info("prepared %s: %s", snakemake.wildcards.dataset, summary)  # noqa: F821
