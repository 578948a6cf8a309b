"""Snakemake script of rule combine_experiment: the runs -> results/<experiment>.nc."""

import logging

from lrdynamics.engine.combine import experiment_dataset
from lrdynamics.engine.logs import setup_logging
from lrdynamics.engine.runfile import open_runs, write_atomic

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
ds = experiment_dataset(open_runs(snakemake.input))  # noqa: F821
write_atomic(ds, snakemake.output[0])  # noqa: F821
statuses = ds.status.values.ravel().tolist()
logging.getLogger("lrdynamics.combine").info(
    "%s: %s; %s",
    ds.attrs["title"],
    ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses))),
    ", ".join(f"{d}={ds.sizes[d]}" for d in ds.sizes),
)
