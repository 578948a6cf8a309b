"""Analysis of full-batch GD runs: edge of stability, catapult, balancing (results/analysis/eos.nc;
docs/science.md section 6).

Per run (``lrdynamics.engine.gd``), with lr its learning rate:

- ``late_sharpness_ratio``: median of sharpness / (2/lr) over the last ``late_fraction`` of
  the sharpness measurements (Cohen et al.: at the edge of stability it hovers at 1);
- ``reached_eos``: the sharpness came within ``band`` of 2/lr at some measurement, i.e.
  the run got past progressive sharpening (or started beyond 2/lr);
- ``at_eos``: reached and the late ratio is within 1 +- band;
- ``spike_height``: max loss / initial loss (above 1.1 it counts as a catapult spike);
- ``initial_balance``, ``final_balance``: (||W_1|| - ||W_L||)^2 of the first and last
  weight layers (the balancing measure);
- ``outcome``: 0 diverged; 1 catapult then edge of stability (a spike, then at_eos);
  2 catapult (a spike, not at the edge at the end); without a spike: 3 edge of stability,
  4 stable (late ratio below 1 + band, not at the edge), 5 not settled (above the band).

All runs stack along one ``run`` dimension (their experiments' grids may differ), with the
hyperparameters as coordinates; curves are padded with NaN where runs are shorter.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from lrdynamics.engine.runfile import drop_hyperparameter_dims, file_attributes

REFERENCES = "Cohen et al. 2021; Lewkowycz et al. 2020; Wang, Chen, Zhao & Tao 2022; Wang, Xu, Zhao & Tao 2023"
OUTCOMES = ("diverged", "catapult_then_eos", "catapult", "eos", "stable", "unsettled")
# A loss that rises more than 10% above its initial value has spiked (a catapult).
SPIKE_MARGIN = 0.1


def run_summary(ds: xr.Dataset, band: float, late_fraction: float) -> dict:
    """The per-run numbers of the module docstring for one GD run dataset."""
    ds = drop_hyperparameter_dims(ds)
    lr = float(ds.attrs["lr"])
    threshold = 2.0 / lr
    top = ds["sharpness"].isel(eigenvalue=0).values
    top = top[np.isfinite(top)]
    n_late = max(1, int(np.ceil(late_fraction * len(top))))
    diverged = ds.attrs["status"] == "diverged"
    # a diverged run has no late time (its last measurements are of the blow-up, or of init)
    ratio = float(np.median(top[-n_late:]) / threshold) if len(top) and not diverged else np.nan
    reached = bool(len(top) and top.max() >= (1 - band) * threshold)
    loss = ds["train_loss"].values
    finite = loss[np.isfinite(loss)]
    spike = float(finite.max() / finite[0]) if len(finite) else np.nan
    norms = ds["layer_norm"].values
    balance = (norms[:, 0] - norms[:, -1]) ** 2
    at_eos = reached and abs(ratio - 1) <= band and not diverged
    spiked = spike > 1 + SPIKE_MARGIN
    if diverged:
        outcome = 0
    elif spiked:
        outcome = 1 if at_eos else 2
    elif at_eos:
        outcome = 3
    else:
        outcome = 4 if ratio < 1 + band else 5
    return {
        "lr": lr,
        "two_over_lr": threshold,
        "initial_sharpness": float(ds.attrs["initial_sharpness"]),
        "late_sharpness_ratio": ratio,
        "reached_eos": int(reached),
        "at_eos": int(at_eos),
        "spike_height": spike,
        "initial_balance": float(balance[0]),
        "final_balance": float(balance[np.isfinite(balance)][-1]),
        "final_loss": float(finite[-1]) if len(finite) else np.nan,
        "outcome": outcome,
        "diverged_step": int(ds.attrs["diverged_step"]),
    }


SUMMARY_ATTRS = {
    "lr": ("GD learning rate", "1"),
    "two_over_lr": ("stability threshold 2/lr", "1"),
    "initial_sharpness": ("sharpness at init S0", "1"),
    "late_sharpness_ratio": ("median late-time sharpness / (2/lr)", "1"),
    "reached_eos": ("1 if the sharpness came within the band of 2/lr", "1"),
    "at_eos": ("1 if reached and the late-time ratio is within 1 +- band", "1"),
    "spike_height": ("max training loss / initial training loss", "1"),
    "initial_balance": ("(||W_1|| - ||W_L||)^2 at init", "1"),
    "final_balance": ("(||W_1|| - ||W_L||)^2 at the last step", "1"),
    "final_loss": ("training loss at the last finite step", "1"),
    "outcome": ("outcome code: " + ", ".join(f"{i} {o}" for i, o in enumerate(OUTCOMES)), "1"),
    "diverged_step": ("step at which the run diverged (-1: did not)", "1"),
}


def eos_analysis(runs: list[xr.Dataset], *, band: float, late_fraction: float) -> xr.Dataset:
    """Stack GD runs along ``run`` with their curves and summaries (module docstring)."""
    rows, curves = [], []
    for ds in runs:
        run = json.loads(ds.attrs["config_json"])
        rows.append(run_summary(ds, band, late_fraction))
        flat = drop_hyperparameter_dims(ds)
        curves.append(
            xr.Dataset(
                {
                    "sharpness": flat["sharpness"].isel(eigenvalue=0, drop=True),
                    "train_loss": flat["train_loss"],
                    "train_accuracy": flat["train_accuracy"],
                    "balance": (flat["layer_norm"].isel(layer=0) - flat["layer_norm"].isel(layer=-1)) ** 2,
                }
            ).expand_dims(run=[f"{run['experiment']}/{run['run']}"])
        )
    if not runs:
        return xr.Dataset(attrs=file_attributes("no GD runs", REFERENCES, __name__))
    out = xr.concat(curves, dim="run", join="outer", data_vars="all", coords="different", compat="equals")
    out["balance"].attrs = {"long_name": "(||W_1|| - ||W_L||)^2", "units": "1"}
    out["sharpness"].attrs = {"long_name": "top Hessian eigenvalue of the training loss", "units": "1"}
    for name, (long_name, units) in SUMMARY_ATTRS.items():
        out[name] = ("run", np.array([r[name] for r in rows]), {"long_name": long_name, "units": units})
    configs = [json.loads(ds.attrs["config_json"]) for ds in runs]
    coords = {
        "experiment": [c["experiment"] for c in configs],
        "loss": [c["loss"] for c in configs],
        "activation": [c["model"]["activation"] for c in configs],
        "norm": [c["model"]["norm"] for c in configs],
        "lr_multiple": [c["lr_multiple"] if c["lr_multiple"] is not None else np.nan for c in configs],
        "seed": [c["seed"] for c in configs],
    }
    out = out.assign_coords({k: ("run", np.asarray(v)) for k, v in coords.items()})
    title = "Full-batch GD: sharpness against 2/lr, catapult spikes and layer balance per run"
    out.attrs.update(
        file_attributes(title, REFERENCES, __name__),
        band=band,
        late_fraction=late_fraction,
        outcomes=" ".join(OUTCOMES),
    )
    return out


def summary(analysis: xr.Dataset) -> list[str]:
    """One line per run: S0, 2/lr, the late sharpness ratio, spike, balance, outcome."""
    lines = []
    for i in range(analysis.sizes.get("run", 0)):
        r = analysis.isel(run=i)
        lines.append(
            f"{r.run.item()}: S0 {float(r.initial_sharpness):.4g}, 2/lr {float(r.two_over_lr):.4g}, "
            f"late sharpness/(2/lr) {float(r.late_sharpness_ratio):.3f}, spike {float(r.spike_height):.3g}, balance "
            f"{float(r.initial_balance):.3g} -> {float(r.final_balance):.3g}, {OUTCOMES[int(r.outcome)]}"
        )
    return lines
