"""Figures of the intrinsic-LR study (Li, Lyu & Arora 2020): equilibrium, its time scale, small LR,
angular update, the scale-invariant toy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from lrdynamics.figures.common import FigureInputs, long_frame, plt, save, sns, theme


def plot_intrinsic_lr_equilibrium(inputs: FigureInputs, png, pdf=None) -> None:
    """Histories converging: accuracy, norm, effective LR and l1 distance, mean over seeds."""
    experiments, titles, analysis = inputs.by_experiment, inputs.titles, inputs.analysis
    frames = []
    for name, runs in experiments.items():
        df = long_frame(runs, ["test_accuracy", "total_weight_norm", "total_effective_lr"])
        df["schedule"] = titles.get(name) or name
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    order = [titles.get(n) or n for n in experiments]
    theme()
    fig, axes = plt.subplots(1, 4, figsize=(21, 5), constrained_layout=True)
    common = dict(x="epoch", hue="schedule", hue_order=order, errorbar=("pi", 100))
    for ax, (name, ylabel, logy) in zip(
        axes,
        [
            ("test_accuracy", "test accuracy", False),
            ("total_weight_norm", "weight norm $\\|w\\|$", False),
            ("total_effective_lr", "effective LR $\\eta/\\|w\\|^2$ (log)", True),
        ],
    ):
        sns.lineplot(data=df, y=name, ax=ax, legend=ax is axes[0], **common)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
    axes[0].legend(fontsize=8, title=None, loc="lower right")
    ax = axes[3]
    names = list(experiments)
    colors = sns.color_palette(n_colors=len(names))
    for i, name in enumerate(names):
        d = analysis.sel(schedule=name)
        if i > 0:
            ax.plot(d.epoch, d.l1_distance_to_reference, color=colors[i], label=f"{name} vs {names[0]}")
        ax.plot(d.epoch, d.l1_noise_floor, color=colors[i], ls=":", label=f"{name}: noise floor")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean l1 distance of label distributions")
    ax.legend(fontsize=7)
    n_seeds = min(len(r) for r in experiments.values())
    heading = (
        f"Different LR/WD histories, then the same LR and WD: one equilibrium ({n_seeds} seeds each; "
        "band = min..max over seeds; dotted = distance between two halves of one schedule's seeds)"
    )
    save(fig, png, pdf, title=heading)


def plot_equilibrium_time_scaling(inputs: FigureInputs, png, pdf=None) -> None:
    """Left: the metric's curves per intrinsic LR. Right: time to equilibrium, log-log, fit."""
    runs, analysis, title = inputs.runs, inputs.analysis, inputs.title
    metric = analysis.attrs["equilibrium_metric"]
    frames = []
    for ds in runs:
        run = json.loads(ds.attrs["config_json"])
        part = long_frame([ds], [metric])
        part["intrinsic LR"] = (
            f"{run['schedule']['wd'] * run['schedule']['lr'] / (1 - run['optimizer']['momentum']):.2g}"
        )
        part["start"] = f"weights x{run['training']['init_scale']:g}"
        frames.append(part)
    df = pd.concat(frames, ignore_index=True)
    theme()
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.2), constrained_layout=True)
    order = sorted(df["intrinsic LR"].unique(), key=float)
    sns.lineplot(data=df, x="epoch", y=metric, hue="intrinsic LR", hue_order=order, style="start", units="seed",
                 estimator=None, ax=axes[0], lw=1)  # fmt: skip
    axes[0].set_yscale("log")
    axes[0].set_ylabel(metric.replace("_", " ") + " (log)")
    ax = axes[1]
    x = analysis.intrinsic_lr.values
    mean = analysis.time_to_equilibrium_mean.values
    lo, hi = analysis.time_to_equilibrium_lower.values, analysis.time_to_equilibrium_upper.values
    ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="o", capsize=4, label="mean over seeds (bar: min..max)")
    slope, ci = float(analysis.slope), (float(analysis.slope_ci_low), float(analysis.slope_ci_high))
    if np.isfinite(slope):
        xs = np.geomspace(x.min(), x.max(), 50)
        ax.plot(
            xs,
            np.exp(float(analysis.intercept)) * xs**slope,
            label=f"fit: slope {slope:.2f} (95% CI {ci[0]:.2f}..{ci[1]:.2f})",
        )
        ref = np.nanmean(np.log(mean) + np.log(x))
        ax.plot(xs, np.exp(ref) / xs, ls="--", color="grey", label="slope -1 (Fast Equilibrium Conjecture)")
    if np.isfinite(mean).any():
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:  # a result, not a crash: say it on the figure
        ax.text(0.5, 0.5, "no seed pair reached equilibrium", transform=ax.transAxes, ha="center")
    ax.set_xlabel("intrinsic LR $\\eta\\lambda/(1-\\gamma)$")
    ax.set_ylabel("steps to equilibrium")
    ax.legend(fontsize=8)
    reached = int(analysis.seeds_reached.sum())
    total = len(runs) // 2
    heading = (
        f"{title}\nequilibrium: first step at which the two starts' {metric.replace('_', ' ')} agree within "
        f"{analysis.attrs['equilibrium_tolerance']:.0%} (and still do at the end); "
        f"{reached}/{total} seed pairs reached it"
    )
    save(fig, png, pdf, title=heading)


def plot_small_lr_generalization(inputs: FigureInputs, png, pdf=None) -> None:
    """Test accuracy against epochs for each initial LR; final accuracy and time to match."""
    runs, title = inputs.runs, inputs.title
    df = long_frame(runs, ["test_accuracy", "learning_rate"])
    df["initial LR"] = [f"{ds.attrs['lr0']:g}" for ds in runs for _ in range(ds.sizes["step"])]
    theme()
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), constrained_layout=True)
    order = sorted(df["initial LR"].unique(), key=float, reverse=True)
    sns.lineplot(
        data=df, x="epoch", y="test_accuracy", hue="initial LR", hue_order=order, errorbar=("pi", 100), ax=axes[0]
    )
    sns.lineplot(data=df, x="epoch", y="learning_rate", hue="initial LR", hue_order=order, ax=axes[1], errorbar=None)
    axes[1].set_yscale("log")
    axes[0].set_ylabel("test accuracy")
    axes[1].set_ylabel("learning rate (log)")
    mean = df.groupby(["initial LR", "epoch"])["test_accuracy"].mean()
    standard = order[0]
    target = mean[standard].iloc[-1]
    lines = []
    for lr in order:
        curve = mean[lr]
        hit = curve[curve >= target - 0.005]
        when = f"at epoch {hit.index[0]:.1f}" if len(hit) else "never in this run"
        lines.append(f"LR {lr}: final {curve.iloc[-1]:.4f}; within 0.005 of {target:.4f} {when}")
    axes[0].text(0.02, 0.02, "\n".join(lines), transform=axes[0].transAxes, fontsize=8, va="bottom",
                 bbox=dict(facecolor="white", alpha=0.8))  # fmt: skip
    save(fig, png, pdf, title=f"{title}\nmean over seeds; band = min..max")


def plot_angular_update(inputs: FigureInputs, png, pdf=None) -> None:
    """Measured equilibrium angular update per run against sqrt(2 eta lambda/(1+gamma))."""
    analysis = inputs.analysis
    d = analysis[["angular_update_measured", "angular_update_predicted", "reached_equilibrium"]].to_dataframe()
    d = d.dropna(subset=["angular_update_predicted"]).reset_index()
    d["experiment"] = d["run_id"].str.split("/").str[0]
    d["equilibrium"] = np.where(d["reached_equilibrium"].astype(bool), "reached", "not reached")
    theme()
    fig, ax = plt.subplots(figsize=(7.5, 6.5), constrained_layout=True)
    sns.scatterplot(data=d, x="angular_update_predicted", y="angular_update_measured", hue="experiment",
                    style="equilibrium", style_order=["reached", "not reached"], s=60, ax=ax)  # fmt: skip
    lim = np.array([d[["angular_update_predicted", "angular_update_measured"]].min().min() * 0.7,
                    d[["angular_update_predicted", "angular_update_measured"]].max().max() * 1.4])  # fmt: skip
    ax.plot(lim, lim, color="k", lw=1, label="measured = predicted")
    ax.fill_between(lim, lim * 0.85, lim * 1.15, color="grey", alpha=0.2, label="±15%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted $\\sqrt{2\\eta\\lambda/(1+\\gamma)}$ (rad)")
    ax.set_ylabel("measured angular update per step, late mean (rad)")
    ax.legend(fontsize=8)
    ok = d[d["equilibrium"] == "reached"]
    within = int((np.abs(ok["angular_update_measured"] / ok["angular_update_predicted"] - 1) <= 0.15).sum())
    ax.set_title(f"{within}/{len(ok)} runs at equilibrium within 15% of the prediction", fontsize=10)
    save(fig, png, pdf)


def plot_scale_invariant_toy(inputs: FigureInputs, png, pdf=None) -> None:
    """GD on x^2/(x^2+y^2): loss, norm and effective LR with and without weight decay."""
    toy = inputs.analysis
    theme()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), constrained_layout=True)
    for wd in toy.wd.values:
        d = toy.sel(wd=wd)
        label = "no WD" if wd == 0 else f"WD {wd:g}"
        axes[0].semilogy(d.step, np.maximum(d.loss, 1e-300), label=label, lw=1)
        axes[1].semilogy(d.step, d.weight_norm, label=label)
        axes[2].semilogy(d.step, d.effective_lr, label=label)
    for ax, ylabel in zip(
        axes, ["loss $x^2/(x^2+y^2)$ (log)", "$\\|w\\|$ (log)", "effective LR $\\eta/\\|w\\|^2$ (log)"]
    ):
        ax.set_xlabel("GD step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    save(fig, png, pdf, title=f"{toy.attrs['title']}: with WD the loss never settles, without WD it converges")
