"""Snakemake script of rule toy_scale_invariant: GD with and without WD on x^2/(x^2+y^2)."""

import numpy as np
import xarray as xr

from lrdynamics.logs import setup_logging
from lrdynamics.record import source_version, write_atomic
from lrdynamics.toys import scale_invariant_gd

setup_logging(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
settings = snakemake.params.settings  # noqa: F821
lr, wds, steps = settings.get("lr", 0.1), settings.get("wds", [0.0, 0.1]), settings.get("steps", 3000)
runs = [scale_invariant_gd(lr=lr, wd=wd, steps=steps) for wd in wds]
units = {"loss": "1", "weight_norm": "1", "effective_lr": "1"}
ds = xr.Dataset(
    {
        k: (("wd", "step"), np.stack([r[k] for r in runs]), {"long_name": k.replace("_", " "), "units": units[k]})
        for k in units
    },
    coords={"wd": wds, "step": np.arange(steps + 1)},
    attrs={
        "Conventions": "CF-1.10",
        "title": f"Full-batch GD on x^2/(x^2+y^2) from (1, 1), lr {lr}",
        "references": "Li, Lyu & Arora 2020, section on GD with WD not converging",
        "source": source_version(),
        "history": "written by lrdynamics.toys.scale_invariant_gd",
        "lr": lr,
    },
)
write_atomic(ds, snakemake.output[0])  # noqa: F821
