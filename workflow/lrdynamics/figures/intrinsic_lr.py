"""Figures of the intrinsic-LR study (Li, Lyu & Arora 2020): equilibrium, its time scale, small LR,
angular update, the scale-invariant toy."""

from __future__ import annotations

import json

import numpy as np

from lrdynamics.figures.common import FigureInputs, long_frame, plt, save, sns, theme
from lrdynamics.studies.intrinsic_lr.equilibrium import final_phase, floor_at_switch


def _seed_bands(runs, variable: str):
    """(epoch, mean, 10% and 90% quantiles over the seeds) of one experiment's runs."""
    values = np.stack([r[variable].values.reshape(r.sizes["step"]) for r in runs])
    return runs[0].epoch.values, values.mean(0), np.quantile(values, 0.1, 0), np.quantile(values, 0.9, 0)


def plot_intrinsic_lr_equilibrium(inputs: FigureInputs, png, pdf=None) -> None:
    """Histories converging: accuracy, norm, effective LR (mean and 10-90% of seeds); the
    function-space distance to the reference against its floor, with the time by the rule;
    mixing vs equilibrium (the weights move on while the classifier distribution stays)."""
    experiments, titles, analysis = inputs.by_experiment, inputs.titles, inputs.analysis
    names = list(experiments)
    colors = dict(zip(names, sns.color_palette(n_colors=len(names))))
    theme()
    fig, axes = plt.subplots(2, 3, figsize=(20, 10.5), constrained_layout=True)
    panels = [
        ("test_accuracy", "test accuracy", False),
        ("total_weight_norm", "weight norm $\\|w\\|$", False),
        ("total_effective_lr", "effective LR $\\eta/\\|w\\|^2$ (log)", True),
    ]
    for ax, (var, ylabel, logy) in zip(axes[0], panels):
        for name, runs in experiments.items():
            epoch, mean, lo, hi = _seed_bands(runs, var)
            ax.plot(epoch, mean, color=colors[name], label=titles.get(name) or name)
            ax.fill_between(epoch, lo, hi, color=colors[name], alpha=0.2, lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=8, loc="lower right")
    ax = axes[1, 0]
    lines = []
    for name in names[1:]:
        d = analysis.sel(schedule=name)
        ax.plot(d.epoch, d.l1_distance_to_reference, color=colors[name], label=f"{name} vs {names[0]}")
        ax.plot(d.epoch, d.l1_matched_floor, color=colors[name], ls=":", label=f"{name}: matched floor")
        t, lo, hi = (float(d[k]) for k in ("history_equilibrium_step", "history_equilibrium_step_ci_low",
                                           "history_equilibrium_step_ci_high"))  # fmt: skip
        spe = float(d.step[1] / d.epoch[1])
        ax.axvline(float(d.history_switch_step) / spe, color="grey", lw=0.8, ls="--")
        if np.isfinite(t):
            y = float(d.l1_matched_floor.sel(step=t))
            err = np.clip([[t - lo], [min(hi, float(d.step[-1])) - t]], 0, None) / spe  # a CI may miss the point
            ax.errorbar([t / spe], [y], xerr=err, fmt="o", color=colors[name], capsize=4)
        lines.append(f"{name}: equilibrium at step {t:g} [{lo:g}, {hi:g}] = "
                     f"{float(d.history_equilibrium_relaxation_times):.1f}/$\\lambda_e$ after the switch; "
                     f"at the switch {float(d.l1_distance_after_switch):.3f} vs floor "
                     f"{floor_at_switch(d):.3f}")  # fmt: skip
    ax.set_ylim(0, None)
    ax.set_xlabel("epoch (dashed: the switch to the shared LR and WD)")
    ax.set_ylabel("mean l1 distance of label distributions")
    ax.set_title("distance between disjoint halves of seeds; dot: first crossing of the floor (95% CI)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    if "mixing_direction_distance" in analysis:
        lag = analysis.mixing_lag.values
        ax.plot(lag, analysis.mixing_direction_distance, color="k", label="weights: |u(T+D) - u(T)|, u = w/|w|")
        ax.fill_between(lag, analysis.mixing_direction_distance_low, analysis.mixing_direction_distance_high,
                        color="k", alpha=0.15, lw=0)  # fmt: skip
        ax.plot(lag, analysis.mixing_function_distance, color=colors[names[0]],
                label="classifiers: l1 between label distributions at T and T+D")  # fmt: skip
        ax.plot(lag, analysis.mixing_function_floor, color=colors[names[0]], ls=":", label="their noise floor")
        ax.set_xlabel(f"D: steps after T = step {int(analysis.mixing_step[0])} ({names[0]})")
        ax.set_ylabel("distance")
        ax.legend(fontsize=8)
        ax.set_title("mixing vs equilibrium: the weights keep moving, the distribution does not", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no evaluation.direction_anchor: not recorded", ha="center", transform=ax.transAxes)
    ax = axes[1, 2]
    ax.axis("off")
    shared_from = float(analysis.epoch.sel(step=analysis.history_switch_step.max(), method="bfill"))
    floors = [f"{n}: split-half floor from epoch {shared_from:.2f} on <= "
              f"{float(analysis.sel(schedule=n).l1_noise_floor_after_switch):.3f}" for n in names]  # fmt: skip
    ax.text(0, 1, "\n".join(lines + floors), va="top", fontsize=9, wrap=True)
    n_seeds = int(analysis.ensemble_seeds.min())
    heading = (
        f"Different LR/WD histories, then the same LR and WD: one equilibrium? ({n_seeds} seeds each; "
        "bands: 10-90% of seeds)"
    )
    save(fig, png, pdf, title=heading)


def plot_equilibrium_time_scaling(inputs: FigureInputs, png, pdf=None) -> None:
    """Function-space distance of the two starts against its floor per intrinsic LR; the
    norm's relaxation; times against the intrinsic LR, log-log, both measures, the fit."""
    runs, analysis, title = inputs.runs, inputs.analysis, inputs.title
    metric = analysis.attrs["equilibrium_metric"]
    lrs = analysis.intrinsic_lr.values
    colors = dict(zip(lrs, sns.color_palette("viridis", n_colors=len(lrs))))
    theme()
    fig, axes = plt.subplots(1, 3, figsize=(21, 5.8), constrained_layout=True)
    ax = axes[0]
    if "function_space_distance" in analysis:
        step = analysis.scaling_step.values
        for x in lrs:
            d = analysis.sel(intrinsic_lr=x)
            ax.plot(np.maximum(step, 1), d.function_space_distance, color=colors[x], label=f"$\\lambda_e$ = {x:.2g}")
            ax.plot(np.maximum(step, 1), d.function_space_floor, color=colors[x], ls=":")
            t = float(d.function_space_time)
            if np.isfinite(t):
                ax.plot([t], [float(d.function_space_floor.sel(scaling_step=t))], "o", color=colors[x])
        ax.set_xscale("log")
        ax.set_xlabel("step (log; step 0 drawn at 1)")
        ax.set_ylabel("mean l1 distance of label distributions")
        ax.set_title("starts x4 vs x1/4, disjoint halves of seeds (solid) vs floor (dotted); dot: crossing",
                     fontsize=9)  # fmt: skip
        ax.legend(fontsize=8)
    ax = axes[1]
    groups: dict = {}
    for ds in runs:
        run = json.loads(ds.attrs["config_json"])
        groups.setdefault((final_phase(ds)[2], run["training"]["init_scale"]), []).append(ds)
    for (x, scale), members in sorted(groups.items()):
        epoch, mean, lo, hi = _seed_bands(members, metric)
        ax.plot(epoch, mean, color=colors.get(x, "k"), ls="-" if scale < 1 else "--", lw=1.2,
                label=f"$\\lambda_e$ = {x:.2g}, weights x{scale:g}")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " ") + " (log), mean over seeds")
    ax.set_title("the norm's relaxation (a second, different measure)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax = axes[2]
    if "function_space_time" in analysis:
        t = analysis.function_space_time.values
        lo, hi = analysis.function_space_time_ci_low.values, analysis.function_space_time_ci_high.values
        top = np.where(np.isfinite(hi), hi, np.nanmax(analysis.scaling_step.values))
        ax.errorbar(lrs, t, yerr=np.clip([t - lo, top - t], 0, None), fmt="o", capsize=4, color="C0",
                    label="function space: first crossing of the floor (95% bootstrap CI over seeds)")  # fmt: skip
        slope = float(analysis.function_space_slope)
        if np.isfinite(slope):
            xs = np.geomspace(lrs.min(), lrs.max(), 50)
            ax.plot(xs, np.exp(float(analysis.function_space_intercept)) * xs**slope, color="C0",
                    label=f"fit: slope {slope:.2f} (95% CI {float(analysis.function_space_slope_ci_low):.2f}.."
                          f"{float(analysis.function_space_slope_ci_high):.2f})")  # fmt: skip
            ref = np.nanmean(np.log(t) + np.log(lrs))
            ax.plot(xs, np.exp(ref) / xs, ls="--", color="grey", label="slope -1 (Fast Equilibrium Conjecture)")
    mean = analysis.norm_relaxation_time_mean.values
    nlo, nhi = analysis.norm_relaxation_time_lower.values, analysis.norm_relaxation_time_upper.values
    ax.errorbar(lrs * 1.04, mean, yerr=[mean - nlo, nhi - mean], fmt="s", capsize=3, color="C3", mfc="none",
                label=f"norm relaxation ({metric.replace('_', ' ')} of the starts within "
                      f"{analysis.attrs['equilibrium_tolerance']:.0%}; mean, min..max over seeds): slope "
                      f"{float(analysis.norm_relaxation_slope):.2f}")  # fmt: skip
    if np.isfinite(mean).any() or ("function_space_time" in analysis and np.isfinite(t).any()):
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:  # a result, not a crash: say it on the figure
        ax.text(0.5, 0.5, "no start pair reached equilibrium", transform=ax.transAxes, ha="center")
    ax.set_xlabel("intrinsic LR $\\eta\\lambda/(1-\\gamma)$")
    ax.set_ylabel("steps to equilibrium")
    ax.legend(fontsize=7)
    seeds = int(analysis.function_space_seeds.min()) if "function_space_seeds" in analysis else len(runs) // 2
    heading = (f"{title}\nfunction space: first step after the peak at which the distance between the starts' label "
               f"distributions falls to the noise floor ({seeds} seeds per start)")  # fmt: skip
    save(fig, png, pdf, title=heading)


def plot_random_schedules_equilibrium(inputs: FigureInputs, png, pdf=None) -> None:
    """Schedules that differ, then share their LR and WD (the paper's CIFAR-10 figure): train
    and test accuracy, weight norm, effective LR, LR and WD against the epoch, one line per
    schedule (mean over its seeds, band 10-90%)."""
    experiments, titles = inputs.by_experiment, inputs.titles
    colors = dict(zip(experiments, sns.color_palette(n_colors=len(experiments))))
    theme()
    fig, axes = plt.subplots(2, 3, figsize=(19, 9.5), constrained_layout=True)
    panels = [
        ("train_accuracy", "train accuracy", "linear"),
        ("test_accuracy", "test accuracy", "linear"),
        ("total_weight_norm", "weight norm $\\|w\\|$ (log)", "log"),
        ("total_effective_lr", "effective LR $\\eta/\\|w\\|^2$ (log)", "log"),
        ("learning_rate", "learning rate (log)", "log"),
        ("weight_decay", "weight decay (symlog: 0 drawn)", "symlog"),
    ]
    for ax, (var, ylabel, scale) in zip(axes.flat, panels):
        for name, runs in experiments.items():
            epoch, mean, lo, hi = _seed_bands(runs, var)
            ax.plot(epoch, mean, color=colors[name], lw=1.2, label=titles.get(name) or name)
            ax.fill_between(epoch, lo, hi, color=colors[name], alpha=0.2, lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_yscale(scale, **({"linthresh": 1e-6} if scale == "symlog" else {}))
    axes[0, 1].legend(fontsize=7, loc="lower right")
    save(fig, png, pdf, title="Different LR/WD schedules, then the same: accuracy, norm and effective LR meet "
                              "(Li, Lyu & Arora 2020, the CIFAR-10 experiment)")  # fmt: skip


def plot_small_lr_generalization(inputs: FigureInputs, png, pdf=None) -> None:
    """Test accuracy against epochs for each initial LR; final accuracy and time to match."""
    runs, title = inputs.runs, inputs.title
    df = long_frame(runs, ["test_accuracy", "total_effective_lr"])
    df["initial LR"] = [f"{ds.attrs['lr0']:g}" for ds in runs for _ in range(ds.sizes["step"])]
    theme()
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), constrained_layout=True)
    order = sorted(df["initial LR"].unique(), key=float, reverse=True)
    sns.lineplot(
        data=df, x="epoch", y="test_accuracy", hue="initial LR", hue_order=order, errorbar=("pi", 100), ax=axes[0]
    )
    sns.lineplot(data=df, x="epoch", y="total_effective_lr", hue="initial LR", hue_order=order, ax=axes[1],
                 errorbar=("pi", 100))  # fmt: skip
    axes[1].set_yscale("log")
    axes[0].set_ylabel("test accuracy")
    axes[1].set_ylabel("effective LR $\\eta/\\|w\\|^2$ (log)")
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


def _within(measured, predicted, tolerance: float = 0.15) -> int:
    return int((np.abs(measured / predicted - 1) <= tolerance).sum())


def plot_angular_update(inputs: FigureInputs, png, pdf=None) -> None:
    """Measured equilibrium angular update and weight norm per run (and ensemble member)
    against their predictions: sqrt(2 eta lambda/(1+gamma)), and the norm from the noise
    trace (the older full-gradient estimate in grey)."""
    analysis = inputs.analysis
    names = ["angular_update_measured", "angular_update_predicted", "weight_norm_measured", "weight_norm_predicted",
             "weight_norm_predicted_full_gradient", "reached_equilibrium"]  # fmt: skip
    d = analysis[names].to_dataframe().reset_index()
    d = d.dropna(subset=["angular_update_predicted"])
    d["experiment"] = d["run_id"].str.split("/").str[0]
    d["equilibrium"] = np.where(d["reached_equilibrium"].astype(bool), "reached", "not reached")
    theme()
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5), constrained_layout=True)
    ok = d[d["equilibrium"] == "reached"]
    for ax, (x, y, label) in zip(axes, [("angular_update_predicted", "angular_update_measured", "angular update"),
                                        ("weight_norm_predicted", "weight_norm_measured", "weight norm")]):  # fmt: skip
        if x == "weight_norm_predicted":
            full = d.dropna(subset=["weight_norm_predicted_full_gradient"])
            ax.scatter(full["weight_norm_predicted_full_gradient"], full[y], s=6, color="grey", alpha=0.3,
                       label="older estimate from |g_B|^2 (biased with momentum)")  # fmt: skip
        shown = d.dropna(subset=[x])
        sns.scatterplot(data=shown, x=x, y=y, hue="experiment", style="equilibrium", style_order=["reached",
                        "not reached"], s=14, alpha=0.6, linewidth=0, ax=ax)  # fmt: skip
        values = d[[x, y]].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        lim = np.array([values.min() * 0.7, values.max() * 1.4]) if len(values) else np.array([0.1, 1.0])
        ax.plot(lim, lim, color="k", lw=1, label="measured = predicted")
        ax.fill_between(lim, lim * 0.85, lim * 1.15, color="grey", alpha=0.2, label="±15%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        reached = ok.dropna(subset=[x])
        ax.set_title(f"{label}: {_within(reached[y], reached[x])}/{len(reached)} runs at equilibrium within 15% "
                     "of the prediction", fontsize=10)  # fmt: skip
    axes[0].set_xlabel("predicted $\\sqrt{2\\eta\\lambda/(1+\\gamma)}$ (rad)")
    axes[0].set_ylabel("measured angular update per step, late mean (rad)")
    axes[1].set_xlabel(
        "predicted $(\\eta/(1-\\gamma)\\,\\|w\\|^2 \\mathrm{tr}\\Sigma_B / 2\\lambda)^{1/4}$ (noise trace)"
    )
    axes[1].set_ylabel("measured weight norm, late mean")
    save(fig, png, pdf, title="Equilibrium predictions, per run and ensemble member (late: the last 20% of the steps)")


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
