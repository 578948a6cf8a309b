"""Snakemake script of every plot rule: the figure's catalog entry
(``lrdynamics.studies.FIGURES``) names its plot function."""

from pathlib import Path

import xarray as xr

from lrdynamics.engine.logs import setup_logging
from lrdynamics.engine.runfile import open_runs
from lrdynamics.figures import common
from lrdynamics.figures.common import FigureInputs
from lrdynamics.studies import FIGURES, load

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
figure = FIGURES[Path(snakemake.output.png).stem]  # noqa: F821
analyses = {}
for path in snakemake.input.analysis:  # noqa: F821
    with xr.open_dataset(path, engine="netcdf4") as ds:
        analyses[Path(path).stem] = ds.load()
common.BANNER = snakemake.params.rehearsal  # noqa: F821 (a rehearsal's figure says so)
inputs = FigureInputs(open_runs(snakemake.input.runs), snakemake.params.titles, analyses)  # noqa: F821
load(figure.plot)(inputs, snakemake.output.png, snakemake.output.pdf)  # noqa: F821
