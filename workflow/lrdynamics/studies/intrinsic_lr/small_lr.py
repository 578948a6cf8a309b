"""A 100x smaller initial LR against the standard one (docs/science.md sections 3 and 8):
``results/analysis/small_lr.nc``.

With WD the small LR's net approaches its equilibrium on the time scale 1/lambda_e of its
own intrinsic LR, 100x the standard's; the claim is that it then reaches the standard
test accuracy. Per LR: every seed's final test accuracy, their mean; the gap small -
standard with a Welch CI over seeds; and how many of the small LR's relaxation times
1/lambda_e it trained before its first decay (or the end).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr
from scipy import stats

from lrdynamics.engine.runfile import file_attributes
from lrdynamics.engine.schedules import milestone_steps
from lrdynamics.studies.intrinsic_lr import REFERENCE


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its Welch t interval (scipy; NaN bounds: fewer than 2 of either)."""
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, np.nan, np.nan
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return diff, float(ci.low), float(ci.high)


def small_lr_analysis(runs: list[xr.Dataset]) -> xr.Dataset:
    by_lr: dict[float, list[xr.Dataset]] = {}
    for ds in runs:
        by_lr.setdefault(float(ds.attrs["lr0"]), []).append(ds)
    if len(by_lr) != 2:
        raise ValueError(f"small_lr needs runs at exactly two initial LRs, got {sorted(by_lr)}")
    small, standard = sorted(by_lr)
    finals = {
        lr: np.array([float(ds.test_accuracy.values.ravel()[-1]) for ds in group if ds.attrs["status"] == "completed"])
        for lr, group in by_lr.items()
    }
    gap, lo, hi = welch_interval(finals[small], finals[standard])
    ds = by_lr[small][0]
    run = json.loads(ds.attrs["config_json"])
    decays = milestone_steps(run["schedule"], int(ds.attrs["steps_per_epoch"]))
    before = min(decays, default=int(ds.attrs["total_steps"]))
    lam_e = small * float(ds.attrs["wd0"]) / (1 - float(ds.attrs["momentum"]))
    lrs = [small, standard]
    out = xr.Dataset(
        {
            "final_test_accuracy": ("lr", [finals[lr].mean() for lr in lrs]),
            "final_test_accuracy_std": (
                "lr",
                [finals[lr].std(ddof=1) if len(finals[lr]) > 1 else np.nan for lr in lrs],
            ),
            "completed_seeds": ("lr", [len(finals[lr]) for lr in lrs]),
            "accuracy_gap": ((), gap),
            "accuracy_gap_ci_low": ((), lo),
            "accuracy_gap_ci_high": ((), hi),
            "small_lr_intrinsic_lr": ((), lam_e),
            "steps_before_decay": ((), before),
            "small_lr_relaxation_times": ((), before * lam_e),
        },
        coords={"lr": lrs},
    )
    for name, text in {
        "final_test_accuracy": "mean over seeds of the test accuracy at the end",
        "final_test_accuracy_std": "its standard deviation over seeds",
        "completed_seeds": "seeds that completed",
        "accuracy_gap": "final test accuracy, small LR minus standard LR (seed means)",
        "accuracy_gap_ci_low": "2.5% bound of the Welch t interval over seeds",
        "accuracy_gap_ci_high": "97.5% bound",
        "small_lr_intrinsic_lr": "the small LR's intrinsic LR eta*lambda/(1-gamma) before its first decay",
        "steps_before_decay": "steps before the first milestone (or the end)",
        "small_lr_relaxation_times": "steps_before_decay x small_lr_intrinsic_lr",
    }.items():
        out[name].attrs.update(long_name=text, units="1")
    out.attrs.update(file_attributes("A 100x smaller initial LR vs the standard LR", REFERENCE, __name__))
    return out


def summary(analysis: xr.Dataset) -> list[str]:
    a = analysis
    return [
        f"final test accuracy: small LR {float(a.final_test_accuracy[0]):.4f}, "
        f"standard {float(a.final_test_accuracy[1]):.4f}; gap {float(a.accuracy_gap):+.4f} "
        f"[{float(a.accuracy_gap_ci_low):+.4f}, {float(a.accuracy_gap_ci_high):+.4f}]; "
        f"the small LR trained {float(a.small_lr_relaxation_times):.2f} of its relaxation times before its decay"
    ]
