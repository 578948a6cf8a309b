"""Snakemake script of every plot_<figure> rule: the figure's name picks the function."""

from pathlib import Path

import xarray as xr

from lrdynamics import plotting
from lrdynamics.logs import setup_logging
from lrdynamics.record import open_runs

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
figure = Path(snakemake.output.png).stem  # noqa: F821
titles = snakemake.params.titles  # noqa: F821
out = {"png": snakemake.output.png, "pdf": snakemake.output.pdf}  # noqa: F821
runs = open_runs(snakemake.input.runs)  # noqa: F821
analyses = {}
for path in snakemake.input.analysis:  # noqa: F821
    with xr.open_dataset(path, engine="netcdf4") as ds:
        analyses[Path(path).stem] = ds.load()
analysis = next(iter(analyses.values()), None)
by_experiment = {name: [ds for ds in runs if ds.attrs["experiment"] == name] for name in titles}
title = next(iter(titles.values()), "")

if figure == "training_curves":
    plotting.plot_training_curves(runs, **out, title=title)
elif figure == "explr_equivalence":
    plotting.plot_explr_equivalence(analysis, **out)
elif figure == "explr_weight_norm":
    plotting.plot_explr_weight_norm(runs, **out, title=title)
elif figure == "texp_vs_step":
    plotting.plot_schedule_comparison(by_experiment, titles, **out)
elif figure == "intrinsic_lr_equilibrium":
    plotting.plot_intrinsic_lr_equilibrium(by_experiment, titles, analysis, **out)
elif figure == "equilibrium_time_scaling":
    plotting.plot_equilibrium_time_scaling(runs, analysis, **out, title=title)
elif figure == "small_lr_generalization":
    plotting.plot_small_lr_generalization(runs, **out, title=title)
elif figure == "angular_update":
    plotting.plot_angular_update(analysis, **out)
elif figure == "scale_invariant_toy":
    plotting.plot_scale_invariant_toy(analysis, **out)
elif figure == "svag_convergence":
    plotting.plot_svag_convergence(analysis, **out, title=title)
elif figure == "lsr_validity":
    plotting.plot_lsr_validity(analysis, titles, **out)
elif figure == "noise_signal":
    plotting.plot_noise_signal(analysis, titles, **out)
elif figure == "adaptive_sqrt_scaling":
    plotting.plot_adaptive_sqrt_scaling(analysis, **out, title=title)
elif figure == "adaptive_svag":
    plotting.plot_adaptive_svag(analysis, **out, title=title)
elif figure == "edge_of_stability":
    plotting.plot_edge_of_stability(analysis, next(iter(titles)), **out, title=title)
elif figure == "regularity":
    plotting.plot_regularity(analysis, next(iter(titles)), **out, title=title)
elif figure == "catapult":
    plotting.plot_catapult(analysis, **out)
elif figure == "balancing":
    plotting.plot_balancing(
        analyses["balancing_toy"], **out, eos=analyses.get("eos"), experiment=next(iter(titles), None)
    )
else:
    raise ValueError(f"no plotting function for figure {figure!r}")
