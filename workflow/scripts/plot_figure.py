"""Snakemake script of every plot_<figure> rule: the figure's name picks the function."""

from pathlib import Path

import xarray as xr

from lrdynamics import plotting
from lrdynamics.logs import setup_logging
from lrdynamics.record import open_runs

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
figure = Path(snakemake.output.png).stem  # noqa: F821
titles = snakemake.params.titles  # noqa: F821
png, pdf = snakemake.output.png, snakemake.output.pdf  # noqa: F821

if figure == "explr_equivalence":
    with xr.open_dataset(snakemake.input[0], engine="netcdf4") as analysis:  # noqa: F821
        plotting.plot_explr_equivalence(analysis.load(), png, pdf)
else:
    runs = open_runs(snakemake.input)  # noqa: F821
    if figure == "texp_vs_step":
        by_experiment = {name: [ds for ds in runs if ds.attrs["experiment"] == name] for name in titles}
        plotting.plot_schedule_comparison(by_experiment, titles, png, pdf)
    else:
        plot = {"training_curves": plotting.plot_training_curves, "explr_weight_norm": plotting.plot_explr_weight_norm}
        plot[figure](runs, png, pdf, title=next(iter(titles.values()), ""))
