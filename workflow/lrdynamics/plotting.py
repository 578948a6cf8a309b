"""Figures (seaborn). Each function takes run datasets and writes PNG + PDF."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402

from lrdynamics.config import format_value  # noqa: E402

SEED_KEYS = ("seed", "training-seed")


def run_label(ds: xr.Dataset, skip=SEED_KEYS) -> str:
    """Legend label of a run: its grid hyperparameters except the seed, and its status."""
    hp = json.loads(ds.attrs["config_json"])["hyperparameters"]
    label = ", ".join(f"{k}={format_value(v)}" for k, v in hp.items() if k not in skip) or ds.attrs["run"]
    if ds.attrs.get("status") == "diverged":
        label += f" (diverged at step {ds.attrs['diverged_step']})"
    return label


def long_frame(runs: list[xr.Dataset], variables: list[str]) -> pd.DataFrame:
    """One row per (run, evaluation point) with ``variables``, ``epoch``, label, seed."""
    frames = []
    for ds in runs:
        flat = ds.squeeze([d for d in ds.dims if d not in ("step", "layer")], drop=True)
        df = flat[variables].reset_coords("epoch").to_dataframe().reset_index()
        df["run"] = run_label(ds)
        df["seed"] = ds.attrs["seed"]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _save(fig, png, pdf=None) -> None:
    fig.savefig(png, dpi=130, bbox_inches="tight")
    if pdf:
        fig.savefig(pdf, bbox_inches="tight")
    plt.close(fig)


def plot_training_curves(runs: list[xr.Dataset], png, pdf=None, title: str = "") -> None:
    """Loss, accuracy, LR, weight norm, effective LR and angular update against epoch.

    Lines are the mean over seeds of runs with the same other hyperparameters; the band
    is their range (min to max).
    """
    variables = [
        "train_loss", "test_loss", "train_accuracy", "test_accuracy", "learning_rate",
        "intrinsic_lr", "total_weight_norm", "total_effective_lr", "total_angular_update",
    ]  # fmt: skip
    df = long_frame(runs, variables)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), constrained_layout=True)
    hue_order = sorted(df["run"].unique())
    common = dict(x="epoch", hue="run", hue_order=hue_order, errorbar=("pi", 100), estimator="mean")
    panels = [
        (("train_loss", "test_loss"), "cross-entropy loss", True),
        (("train_accuracy", "test_accuracy"), "accuracy", False),
        (("learning_rate",), "learning rate $\\eta$", True),
        (("total_weight_norm",), "weight norm $\\|w\\|$ (all layers)", False),
        (("total_effective_lr",), "effective LR $\\eta/\\|w\\|^2$", True),
        (("total_angular_update",), "angular update per step (rad)", True),
    ]
    for ax, (names, ylabel, logy) in zip(axes.flat, panels):
        part = df.melt(id_vars=["epoch", "run", "seed"], value_vars=list(names), var_name="split")
        part["split"] = part["split"].str.split("_").str[0]  # train_loss -> train
        style = dict(style="split", style_order=["train", "test"]) if len(names) > 1 else {}
        sns.lineplot(data=part, y="value", ax=ax, legend=ax is axes.flat[0], **common, **style)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
    axes.flat[0].legend(fontsize=8, title=None)
    exp = runs[0].attrs
    n_seeds = df.groupby("run")["seed"].nunique().max()
    fig.suptitle(
        f"{title or exp['experiment']}\n{exp['model']} ({exp['norm']}), {exp['dataset']}, B={exp['batch_size']}, "
        f"momentum {exp['momentum']}; mean over {n_seeds} seed(s), band = min..max",
        fontsize=11,
    )
    _save(fig, png, pdf)
