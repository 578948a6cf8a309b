"""Figures (seaborn). Each function takes run datasets and writes PNG + PDF."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402

from lrdynamics.config import format_value  # noqa: E402
from lrdynamics.record import drop_hyperparameter_dims  # noqa: E402
from lrdynamics.schedules import build_schedule  # noqa: E402

SEED_KEYS = ("seed", "training-seed", "perturb_init")  # left out of legend labels


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
        df = drop_hyperparameter_dims(ds[variables]).reset_coords("epoch").to_dataframe().reset_index()
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


def unperturbed(runs: list[xr.Dataset]) -> list[xr.Dataset]:
    """Runs that are not chaos-floor twins (training.perturb_init false)."""
    return [ds for ds in runs if not json.loads(ds.attrs["config_json"])["training"]["perturb_init"]]


def plot_explr_equivalence(analysis: xr.Dataset, png, pdf=None) -> None:
    """Per pair: test accuracy of both formulations overlaid; logit difference vs chaos floor."""
    pairs = list(analysis.pair.values)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(2, len(pairs), figsize=(5.2 * len(pairs), 7.5), constrained_layout=True, squeeze=False)
    for j, pair in enumerate(pairs):
        p = analysis.sel(pair=pair).dropna("step", how="all")
        ax = axes[0, j]
        ax.plot(p.epoch, p.test_accuracy_reference, lw=3, alpha=0.45, label=f"{str(p.schedule.values)} with WD")
        ax.plot(
            p.epoch, p.test_accuracy_counterpart, ls="--", color="k", lw=1.2, label=f"{p.counterpart.values}, no WD"
        )
        ax.set_title(pair.replace(" vs ", "\nvs "), fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8, loc="lower right")
        ax = axes[1, j]
        # Exact zeros (identical logits, e.g. at step 0) have no place on a log axis.
        positive = {k: p[k].where(p[k] > 0) for k in ("max_abs_logit_diff", "chaos_floor_logit_diff")}
        ax.semilogy(p.epoch, positive["max_abs_logit_diff"], marker="o", ms=3, label="reference vs counterpart")
        ax.semilogy(
            p.epoch, positive["chaos_floor_logit_diff"], marker="s", ms=3, label="reference vs 1-ulp twin (chaos floor)"
        )
        ax.axhline(float(analysis.attrs["logit_diff_floor"]), color="grey", ls=":", label="1e-3")
        verdict = "within" if bool(p.within_chaos_criterion) else "NOT within"
        ax.set_title(f"{verdict} max(1e-3, 3 x floor) at every step", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("max |logit difference| (test)")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"{analysis.attrs['title']}\n(dtype {analysis.dtype.values[0]}; equal curves and a logit gap at the chaos "
        "floor mean the same trajectory)",
        fontsize=11,
    )
    _save(fig, png, pdf)


def plot_explr_weight_norm(runs: list[xr.Dataset], png, pdf=None, title: str = "") -> None:
    """Weight norm, LR, effective LR and test accuracy of WD vs its exponential counterpart."""
    runs = unperturbed(runs)
    df = long_frame(runs, ["total_weight_norm", "learning_rate", "total_effective_lr", "test_accuracy"])
    df["run"] = [
        "exponential counterpart, no WD" if "wd_as_exp_lr=true" in r else "with WD" for r in df["run"]
    ]  # fmt: skip
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.6), constrained_layout=True)
    panels = [
        ("total_weight_norm", "weight norm $\\|w\\|$ (log)", True),
        ("learning_rate", "learning rate (log)", True),
        ("total_effective_lr", "effective LR $\\eta/\\|w\\|^2$ (log)", True),
        ("test_accuracy", "test accuracy", False),
    ]
    for ax, (name, ylabel, logy) in zip(axes, panels):
        sns.lineplot(data=df, x="epoch", y=name, hue="run", style="run", ax=ax, legend=ax is axes[0], errorbar=None)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
    attrs = runs[0].attrs
    fig.suptitle(
        f"{title or attrs['experiment']}\nlr {attrs['lr0']}, WD {attrs['wd0']}, momentum {attrs['momentum']}: "
        "the counterpart's norm grows exponentially while its effective LR and accuracy match the WD run",
        fontsize=11,
    )
    _save(fig, png, pdf)


def schedule_frame(runs: list[xr.Dataset]) -> pd.DataFrame:
    """LR and WD at every step, rebuilt from each run's config (evaluation points are sparse)."""
    frames = []
    for ds in runs:
        run = json.loads(ds.attrs["config_json"])
        spe, n = int(ds.attrs["steps_per_epoch"]), int(ds.attrs["total_steps"])
        sched = build_schedule(run["schedule"], spe, n, run["optimizer"]["momentum"])
        frames.append(
            pd.DataFrame(
                {"epoch": np.arange(n) / spe, "learning_rate": sched.lr, "weight_decay": sched.wd, "run": run_label(ds)}
            )
        )
    return pd.concat(frames, ignore_index=True)


def plot_schedule_comparison(experiments: dict[str, list[xr.Dataset]], titles: dict[str, str], png, pdf=None) -> None:
    """One column per experiment: LR at every step, effective LR, test accuracy."""
    sns.set_theme(style="whitegrid", context="notebook")
    n = len(experiments)
    fig, axes = plt.subplots(3, n, figsize=(5.6 * n, 10.5), constrained_layout=True, squeeze=False)
    for j, (name, runs) in enumerate(experiments.items()):
        runs = unperturbed(runs)
        df = long_frame(runs, ["total_effective_lr", "test_accuracy"])
        sched = schedule_frame(runs)
        hue_order = sorted(df["run"].unique())
        common = dict(x="epoch", hue="run", hue_order=hue_order, style="run", errorbar=None)
        ax = axes[0, j]
        sns.lineplot(data=sched, y="learning_rate", ax=ax, **common)
        ax.set_yscale("log")
        ax.set_ylabel("learning rate (log)")
        ax.set_title(titles.get(name) or name, fontsize=10)
        ax.legend(fontsize=8, title=None)
        sns.lineplot(data=df, y="total_effective_lr", ax=axes[1, j], legend=False, **common)
        axes[1, j].set_yscale("log")
        axes[1, j].set_ylabel("effective LR $\\eta/\\|w\\|^2$ (log)")
        sns.lineplot(data=df, y="test_accuracy", ax=axes[2, j], legend=False, **common)
        axes[2, j].set_ylabel("test accuracy")
    fig.suptitle("Step decay, its exponential counterparts, and decays of WD instead of LR", fontsize=12)
    _save(fig, png, pdf)


def plot_intrinsic_lr_equilibrium(
    experiments: dict[str, list[xr.Dataset]], titles: dict[str, str], analysis: xr.Dataset, png, pdf=None
) -> None:
    """Histories converging: accuracy, norm, effective LR and l1 distance, mean over seeds."""
    frames = []
    for name, runs in experiments.items():
        df = long_frame(runs, ["test_accuracy", "total_weight_norm", "total_effective_lr"])
        df["schedule"] = titles.get(name) or name
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    order = [titles.get(n) or n for n in experiments]
    sns.set_theme(style="whitegrid", context="notebook")
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
    fig.suptitle(
        f"Different LR/WD histories, then the same LR and WD: one equilibrium ({n_seeds} seeds each; "
        "band = min..max over seeds; dotted = distance between two halves of one schedule's seeds)",
        fontsize=11,
    )
    _save(fig, png, pdf)


def plot_equilibrium_time_scaling(runs: list[xr.Dataset], analysis: xr.Dataset, png, pdf=None, title: str = "") -> None:
    """Left: the metric's curves per intrinsic LR. Right: time to equilibrium, log-log, fit."""
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
    sns.set_theme(style="whitegrid", context="notebook")
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
    fig.suptitle(
        f"{title}\nequilibrium: first step at which the two starts' {metric.replace('_', ' ')} agree within "
        f"{analysis.attrs['equilibrium_tolerance']:.0%} (and still do at the end); "
        f"{reached}/{total} seed pairs reached it",
        fontsize=11,
    )
    _save(fig, png, pdf)


def plot_small_lr_generalization(runs: list[xr.Dataset], png, pdf=None, title: str = "") -> None:
    """Test accuracy against epochs for each initial LR; final accuracy and time to match."""
    df = long_frame(runs, ["test_accuracy", "learning_rate"])
    df["initial LR"] = [f"{ds.attrs['lr0']:g}" for ds in runs for _ in range(ds.sizes["step"])]
    sns.set_theme(style="whitegrid", context="notebook")
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
    fig.suptitle(f"{title}\nmean over seeds; band = min..max", fontsize=11)
    _save(fig, png, pdf)


def plot_angular_update(analysis: xr.Dataset, png, pdf=None) -> None:
    """Measured equilibrium angular update per run against sqrt(2 eta lambda/(1+gamma))."""
    d = analysis[["angular_update_measured", "angular_update_predicted", "reached_equilibrium"]].to_dataframe()
    d = d.dropna(subset=["angular_update_predicted"]).reset_index()
    d["experiment"] = d["run_id"].str.split("/").str[0]
    d["equilibrium"] = np.where(d["reached_equilibrium"].astype(bool), "reached", "not reached")
    sns.set_theme(style="whitegrid", context="notebook")
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
    _save(fig, png, pdf)


def plot_scale_invariant_toy(toy: xr.Dataset, png, pdf=None) -> None:
    """GD on x^2/(x^2+y^2): loss, norm and effective LR with and without weight decay."""
    sns.set_theme(style="whitegrid", context="notebook")
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
    fig.suptitle(f"{toy.attrs['title']}: with WD the loss never settles, without WD it converges", fontsize=11)
    _save(fig, png, pdf)


def plot_svag_convergence(svag: xr.Dataset, png, pdf=None, title: str = "") -> None:
    """Test accuracy against effective steps, one line per l; distance from the largest l."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), constrained_layout=True)
    colors = sns.color_palette("viridis", n_colors=len(svag.l))
    ref = int(svag.attrs["reference_l"])
    for color, l in zip(colors, svag.l.values):
        d = svag.sel(l=l)
        label = f"l={l}" + (" (SGD)" if l == 1 else "") + f", {int(d.seeds)} seed(s)"
        axes[0].plot(d.step, d.test_accuracy, color=color, label=label)
        axes[1].plot(d.step, d.train_loss, color=color, label=label)
    axes[0].set_ylabel("test accuracy (mean over seeds)")
    axes[1].set_ylabel("train loss (eval mode, mean over seeds)")
    axes[1].set_yscale("log")
    for ax in axes[:2]:
        ax.set_xlabel("effective steps (updates / l)")
        ax.legend(fontsize=8)
    plot_svag_distance(axes[2], svag, ref)
    left_out = svag.attrs.get("diverged_runs", "none")
    note = "" if left_out == "none" else f"\ndiverged, left out of the means: {left_out}"
    fig.suptitle(f"{title}\nSVAG converges to the SDE of SGD as l grows: curves should collapse{note}", fontsize=11)
    _save(fig, png, pdf)


def plot_svag_distance(ax, svag: xr.Dataset, ref: int, prefix: str = "") -> None:
    """Each l's distance from l = ref (mean over the run and at the end), log2 l axis."""
    others = svag.sel(l=svag.l[svag.l != ref])
    for name, marker, text in (("test_accuracy_distance", "o", "mean over the run"),
                               ("final_test_accuracy_distance", "s", "at the end")):  # fmt: skip
        ax.plot(others.l, others[prefix + name], marker=marker, label=f"|test acc - test acc(l={ref})|, {text}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("SVAG l")
    ax.set_ylabel(f"distance from l={ref}")
    ax.legend(fontsize=8)


def lsr_nets(lsr: xr.Dataset, titles: dict[str, str]) -> list[tuple[str, xr.Dataset]]:
    """(experiment, its part of lsr.nc with only its own batch sizes), in the figure's order."""
    return [
        (n, lsr.sel(experiment=n).dropna("batch_size", how="all", subset=["learning_rate"]))
        for n in titles
        if n in lsr.experiment.values
    ]


def plot_lsr_validity(lsr: xr.Dataset, titles: dict[str, str], png, pdf=None) -> None:
    """Final test accuracy against batch size under LSR, one panel per net, B* marked."""
    nets = lsr_nets(lsr, titles)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, len(nets), figsize=(6 * len(nets), 5), constrained_layout=True, squeeze=False)
    for ax, (name, d) in zip(axes[0], nets):
        ax.plot(d.batch_size, d.final_test_accuracy, marker="o", label="final test accuracy")
        bad = d.batch_size[d.diverged.astype(bool)]
        for b in bad.values:
            ax.axvline(b, color="red", ls=":", lw=1)
        b_star = float(d.predicted_critical_batch_size)
        if np.isfinite(b_star):
            ax.axvline(b_star, color="k", ls="--", label=f"predicted B* = {b_star:.0f}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size B (LR = lr0 B / B0)")
        ax.set_ylabel("final test accuracy")
        ax.set_title(titles[name] or name, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("Linear scaling rule: accuracy holds up to about the predicted critical batch size", fontsize=11)
    _save(fig, png, pdf)


def plot_noise_signal(lsr: xr.Dataset, titles: dict[str, str], png, pdf=None) -> None:
    """G, N = tr Sigma_1 and N/(B G) against epochs, one line per batch size; a row per net."""
    nets = lsr_nets(lsr, titles)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(len(nets), 3, figsize=(17, 4.5 * len(nets)), constrained_layout=True, squeeze=False)
    for row, (name, d) in zip(axes, nets):
        colors = sns.color_palette("rocket_r", n_colors=len(d.batch_size))
        for color, b in zip(colors, d.batch_size.values):
            e = d.sel(batch_size=b).dropna("noise_epoch", subset=["gradient_signal"])
            ratio = e.gradient_noise / (b * e.gradient_signal)
            row[0].plot(e.noise_epoch, e.gradient_signal.where(e.gradient_signal > 0), marker=".", color=color)
            row[1].plot(e.noise_epoch, e.gradient_noise, marker=".", color=color)
            row[2].plot(e.noise_epoch, ratio.where(ratio > 0), marker=".", color=color, label=f"B={b}")
        row[2].axhline(1.0, color="k", ls="--", lw=1, label="N = B G")
        labels = ["signal G = |grad L|^2", "noise N = tr Sigma_1 (per example)", "N/(B G): noise over signal at B"]
        for ax, ylabel in zip(row, labels):
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
        row[0].set_title(titles[name] or name, fontsize=10, loc="left")
        row[2].legend(fontsize=7, ncol=2)
    fig.suptitle("Gradient signal and noise during training (negative estimates of G not drawn)", fontsize=11)
    _save(fig, png, pdf)


RULE_ORDER = ("none", "linear", "sqrt")
RULE_TEXT = {"none": "no scaling", "linear": "linear rule", "sqrt": "square-root rule"}


def plot_adaptive_sqrt_scaling(adaptive: xr.Dataset, png, pdf=None, title: str = "") -> None:
    """Test accuracy against epochs, a line per kappa, a panel per (optimizer, rule); and
    the final test accuracy against kappa per rule, whose spread the rules are judged by."""
    rules = [r for r in RULE_ORDER if r in adaptive.scaling_rule.values]
    opts = list(adaptive.optimizer.values)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(
        len(opts), len(rules) + 1, figsize=(5.2 * (len(rules) + 1), 4.2 * len(opts)), constrained_layout=True,
        squeeze=False,
    )  # fmt: skip
    kappas = adaptive.kappa.values
    colors = sns.color_palette("viridis", n_colors=len(kappas))
    for row, opt in zip(axes, opts):
        for ax, rule in zip(row, rules):
            d = adaptive.sel(optimizer=opt, scaling_rule=rule)
            for color, kappa in zip(colors, kappas):
                e = d.sel(kappa=kappa)
                if not np.isfinite(e.test_accuracy).any():
                    continue
                label = f"kappa={kappa:g} (lr {float(e.learning_rate):.2g})"
                if int(e.completed_seeds) == 0:
                    label += ", diverged"
                ax.plot(e.epoch, e.test_accuracy, color=color, label=label)
            spread, dist = float(d.final_test_accuracy_spread), float(d.mean_test_accuracy_curve_distance)
            ax.set_title(f"{opt}, {RULE_TEXT[rule]}\nspread of final test acc over kappa: {spread:.4f}; "
                         f"curve distance from kappa={kappas[0]:g}: {dist:.4f}", fontsize=9)  # fmt: skip
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy")
            ax.legend(fontsize=7)
        ax = row[-1]
        for rule, marker in zip(rules, "osD"):
            d = adaptive.sel(optimizer=opt, scaling_rule=rule)
            ax.plot(kappas, d.final_test_accuracy, marker=marker, label=rule)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("kappa = batch size / reference batch size")
        ax.set_ylabel("final test accuracy")
        ax.set_title(f"{opt}: the rule that keeps the SDE should keep accuracy flat", fontsize=10)
        ax.legend(fontsize=8)
    left_out = adaptive.attrs.get("scaling_diverged_runs", "none")
    note = "" if left_out == "none" else f"\ndiverged: {left_out}"
    fig.suptitle(f"{title}\nBatch size x kappa under each scaling rule{note}", fontsize=11)
    _save(fig, png, pdf)


def plot_adaptive_svag(adaptive: xr.Dataset, png, pdf=None, title: str = "") -> None:
    """Test accuracy against effective epochs, a line per SVAG l, a row per optimizer;
    each l's distance from the largest l."""
    opts = list(adaptive.optimizer.values)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(len(opts), 2, figsize=(12, 4.2 * len(opts)), constrained_layout=True, squeeze=False)
    ls = adaptive.l.values
    colors = sns.color_palette("viridis", n_colors=len(ls))
    for row, opt in zip(axes, opts):
        d = adaptive.sel(optimizer=opt)
        ref = int(d.svag_reference_l)
        for color, l in zip(colors, ls):
            e = d.sel(l=l)
            label = f"l={l}" + (f" ({opt})" if l == 1 else f" ({l * l}x updates)")
            row[0].plot(e.svag_epoch, e.svag_test_accuracy, color=color, label=label)
        row[0].set_xlabel("effective epochs (updates / l^2 per step)")
        row[0].set_ylabel("test accuracy (mean over seeds)")
        row[0].set_title(f"{opt}: adaptive SVAG", fontsize=10)
        row[0].legend(fontsize=8)
        plot_svag_distance(row[1], d, ref, prefix="svag_")
    left_out = adaptive.attrs.get("svag_diverged_runs", "none")
    note = "" if left_out == "none" else f"\ndiverged, left out: {left_out}"
    fig.suptitle(f"{title}\nSVAG for Adam/RMSprop converges to their SDE as l grows: curves should collapse{note}",
                 fontsize=11)  # fmt: skip
    _save(fig, png, pdf)


# --- Large-LR implicit biases (papers.md section 5) --------------------------------------


def _gd_runs(eos: xr.Dataset, experiment: str) -> xr.Dataset:
    return eos.isel(run=np.flatnonzero(eos.experiment.values == experiment))


def _lr_label(r: xr.Dataset) -> str:
    """ "c=<multiple>" for runs with lr = c x 2/S0, else "lr=<lr>"."""
    c = float(r.lr_multiple)
    return f"c={c:g}" if np.isfinite(c) else f"lr={float(r.lr):.3g}"


def plot_edge_of_stability(eos: xr.Dataset, experiment: str, png, pdf=None, title: str = "") -> None:
    """Sharpness against GD step with a dashed line at 2/lr per run; training loss below."""
    from lrdynamics.eos import OUTCOMES

    d = _gd_runs(eos, experiment)
    d = d.isel(run=np.argsort(d.lr.values))
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 2, figsize=(15, 5), constrained_layout=True)
    colors = sns.color_palette("viridis", n_colors=d.sizes["run"])
    for color, i in zip(colors, range(d.sizes["run"])):
        r = d.isel(run=i)
        s = r.sharpness.dropna("sharpness_step")
        label = (
            f"lr {float(r.lr):.3g} ({_lr_label(r)}): late S/(2/lr) = {float(r.late_sharpness_ratio):.3f}"
            f" [{OUTCOMES[int(r.outcome)]}]"
        )
        axes[0].plot(s.sharpness_step, s, color=color, marker=".", ms=3, label=label)
        axes[0].axhline(float(r.two_over_lr), color=color, ls="--", lw=1)
        loss = r.train_loss.dropna("step")
        axes[1].semilogy(loss.step, loss, color=color, lw=0.8, label=f"lr {float(r.lr):.3g}")
    axes[0].set_xlabel("GD step")
    axes[0].set_ylabel("sharpness (top Hessian eigenvalue)")
    axes[0].set_title("sharpness rises to 2/lr (dashed) and hovers there", fontsize=10)
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("GD step")
    axes[1].set_ylabel("training loss (log)")
    axes[1].set_title("the loss keeps falling, non-monotonically, at the edge of stability", fontsize=10)
    axes[1].legend(fontsize=8)
    fig.suptitle(title or "Edge of stability", fontsize=11)
    _save(fig, png, pdf)


def plot_catapult(toy: xr.Dataset, png, pdf=None) -> None:
    """Per loss: loss (log) and lr x lambda_t against t per eta*lambda0 (lines at 2 and 4);
    last column: spike height and final lr x lambda against eta*lambda0."""
    from lrdynamics.catapult import CATAPULT_OUTCOMES

    sns.set_theme(style="whitegrid", context="notebook")
    losses = list(toy.loss_function.values)
    fig, axes = plt.subplots(2, len(losses) + 1, figsize=(5 * (len(losses) + 1), 8), constrained_layout=True)
    c = toy.eta_lambda0.values
    colors = sns.color_palette("coolwarm", n_colors=len(c))
    markers = {0: "o", 1: "s", 2: "x", 3: "^"}
    for j, loss in enumerate(losses):
        d = toy.sel(loss_function=loss)
        for color, value in zip(colors, c):
            r = d.sel(eta_lambda0=value)
            axes[0, j].semilogy(r.t, r.loss / r.loss.isel(t=0), color=color, lw=1, label=f"{value:g}")
            axes[1, j].plot(r.t, r.eta_lambda, color=color, lw=1)
        for y in (2, 4):
            axes[1, j].axhline(y, color="k", ls="--", lw=0.8)
        axes[0, j].set_title(f"{loss} loss", fontsize=10)
        axes[0, j].set_ylabel("loss / initial loss (log)")
        axes[1, j].set_ylabel("lr x NTK $\\eta\\lambda_t$")
        axes[1, j].set_ylim(0, 6)
        axes[1, j].set_xlabel("GD step t")
        axes[0, j].set_xlabel("GD step t")
        outcome = d.outcome.values
        (line,) = axes[0, -1].plot(c, d.spike_height, label=loss)
        axes[1, -1].plot(c, d.final_eta_lambda.where(outcome != 2), label=loss, color=line.get_color())
        for k, m in markers.items():
            sel = outcome == k
            if sel.any():
                spikes = np.nan_to_num(d.spike_height.values[sel], nan=1.0)
                axes[0, -1].scatter(c[sel], spikes, marker=m, s=25, color=line.get_color())
    axes[0, 0].legend(title="$\\eta\\lambda_0$", fontsize=7, ncol=2)
    axes[0, -1].set_yscale("log")
    axes[0, -1].set_ylabel("spike height max loss / initial loss")
    axes[0, -1].set_title(
        "outcome: " + ", ".join(f"{markers[k]} {o}" for k, o in enumerate(CATAPULT_OUTCOMES)), fontsize=8
    )
    axes[1, -1].set_ylabel("final $\\eta\\lambda$ (converged runs)")
    for ax in axes[:, -1]:
        ax.axvspan(2, 4, color="0.9", zorder=0)
        ax.set_xlabel("$\\eta\\lambda_0$ (grey: the catapult window 2..4)")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"{toy.attrs['title']}, $\\lambda_0$ = {toy.attrs['lambda0']:.3f}: catapult for 2 < $\\eta\\lambda_0$ < 4",
        fontsize=11,
    )
    _save(fig, png, pdf)


def plot_balancing(
    toy: xr.Dataset, png, pdf=None, eos: xr.Dataset | None = None, experiment: str | None = None
) -> None:
    """Toy: |x| - |y| over steps per c (square loss), the final imbalance against c per loss
    and problem, and lr x sharpness; with a GD experiment, its runs' (||W1||-||W2||)^2."""
    sns.set_theme(style="whitegrid", context="notebook")
    real = eos is not None and experiment is not None
    fig, axes = plt.subplots(1, 4 if real else 3, figsize=(22 if real else 17, 5), constrained_layout=True)
    c = toy.c.values
    colors = sns.color_palette("coolwarm", n_colors=len(c))
    first = "square" if "square" in toy.loss_function.values else str(toy.loss_function.values[0])
    d = toy.sel(loss_function=first, problem="scalar")
    for color, value in zip(colors, c):
        r = d.sel(c=value)
        axes[0].plot(r.step, r.balance, color=color, lw=1, label=f"c={value:g}")
        axes[2].plot(r.step, r.sharpness * r.lr, color=color, lw=1)
    axes[0].set_xscale("symlog", linthresh=10)
    axes[0].set_xlim(0, int(toy.step[-1]))
    axes[0].set_ylim(-4.5, 4.5)
    axes[0].set_xlabel("GD step")
    axes[0].set_ylabel("|x| - |y|")
    axes[0].set_title(f"scalar problem, {first} loss, h = c / L0", fontsize=10)
    axes[0].legend(fontsize=7, ncol=2)
    axes[2].axhline(2, color="k", ls="--", lw=0.8)
    axes[2].set_xscale("symlog", linthresh=10)
    axes[2].set_xlim(0, int(toy.step[-1]))
    axes[2].set_ylim(0, 4)
    axes[2].set_xlabel("GD step")
    axes[2].set_ylabel("h x sharpness (2: stability limit)")
    axes[2].set_title(f"scalar problem, {first} loss", fontsize=10)
    for loss in toy.loss_function.values:
        for problem, ls in (("scalar", "-"), ("matrix", ":")):
            f = toy.sel(loss_function=loss, problem=problem)
            diverged = f.diverged_step.values >= 0
            line = axes[1].plot(c, np.where(diverged, np.nan, np.abs(f.final_balance)), ls=ls, marker="o", ms=3,
                                label=f"{loss}, {problem}")  # fmt: skip
            if diverged.any():
                axes[1].scatter(c[diverged], np.zeros(diverged.sum()), marker="x", color=line[0].get_color())
    axes[1].set_xlabel("c (h = c / L0; the scalar minimum is stable for c < 4)")
    axes[1].set_ylabel("final | ||X|| - ||Y|| |   (x on the axis: diverged)")
    axes[1].set_title("large steps balance the factors; the quartic loss does not", fontsize=10)
    axes[1].legend(fontsize=7)
    if real:
        g = _gd_runs(eos, experiment)
        palette = sns.color_palette("tab10", n_colors=g.sizes["run"])
        for color, i in zip(palette, range(g.sizes["run"])):
            r = g.isel(run=i)
            b = r.balance.dropna("step")
            label = f"{r.loss.item()}, {r.activation.item()}, {r.norm.item()}, {_lr_label(r)}"
            axes[3].semilogy(b.step, b, color=color, lw=1, ls="-" if r.loss.item() == "huber" else ":", label=label)
        axes[3].set_xlabel("GD step")
        axes[3].set_ylabel("$(\\|W_1\\| - \\|W_2\\|)^2$ (log)")
        axes[3].set_title(f"real nets (experiment {experiment}; dotted: mse, solid: huber)", fontsize=10)
        axes[3].legend(fontsize=6, ncol=2)
    fig.suptitle(f"{toy.attrs['title']}", fontsize=11)
    _save(fig, png, pdf)


def plot_regularity(eos: xr.Dataset, experiment: str, png, pdf=None, title: str = "") -> None:
    """Outcome per (loss, activation) x (norm, c) as a coloured table, and each run's
    sharpness / (2/lr) and loss."""
    from matplotlib.colors import ListedColormap

    from lrdynamics.eos import OUTCOMES

    d = _gd_runs(eos, experiment)
    sns.set_theme(style="white", context="notebook")
    rows = sorted({(str(lo), str(a)) for lo, a in zip(d.loss.values, d.activation.values)})
    cols = sorted({(str(r.norm.item()), _lr_label(r)) for r in (d.isel(run=i) for i in range(d.sizes["run"]))})
    grid = np.full((len(rows), len(cols)), np.nan)
    text = np.full((len(rows), len(cols)), "", dtype=object)
    for i in range(d.sizes["run"]):
        r = d.isel(run=i)
        row = rows.index((r.loss.item(), r.activation.item()))
        col = cols.index((r.norm.item(), _lr_label(r)))
        grid[row, col] = int(r.outcome)
        if int(r.outcome) == 0:
            text[row, col] = f"diverged\nstep {int(r.diverged_step)}"
        else:
            text[row, col] = (
                f"{OUTCOMES[int(r.outcome)].replace('_', ' ')}\nS/(2/lr) {float(r.late_sharpness_ratio):.2f}"
                f"\nspike x{float(r.spike_height):.3g}"
            )
    fig = plt.figure(figsize=(max(12, 2.3 * len(cols) + 2), 4 + 1.2 * len(rows)), constrained_layout=True)
    sub = fig.subfigures(2, 1, height_ratios=[1.2 * len(rows) + 1, 4])
    ax = sub[0].subplots()
    palette = ["#d62728", "#9467bd", "#ff7f0e", "#2ca02c", "#1f77b4", "#7f7f7f"]
    ax.imshow(grid, cmap=ListedColormap(palette), vmin=-0.5, vmax=len(OUTCOMES) - 0.5, aspect="auto")
    for (i, j), t in np.ndenumerate(text):
        ax.text(j, i, t, ha="center", va="center", fontsize=8, color="white")
    ax.set_xticks(range(len(cols)), [f"{n}, {lr}" for n, lr in cols])
    ax.set_yticks(range(len(rows)), [f"{lo}, {a}" for lo, a in rows])
    ax.set_xlabel("normalization, learning rate (c: lr = c x 2/S0)")
    ax.set_ylabel("loss, activation")
    handles = [plt.Rectangle((0, 0), 1, 1, color=p) for p in palette]
    ax.legend(handles, [o.replace("_", " ") for o in OUTCOMES], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    curves = sub[1].subplots(1, 2)
    sns.set_theme(style="whitegrid", context="notebook")
    palette_runs = sns.color_palette("tab20", n_colors=d.sizes["run"])
    for color, i in zip(palette_runs, range(d.sizes["run"])):
        r = d.isel(run=i)
        ls = "-" if r.loss.item() == "huber" else ":"
        s = (r.sharpness / r.two_over_lr).dropna("sharpness_step")
        curves[0].plot(s.sharpness_step, s, color=color, ls=ls, marker=".", ms=3)
        loss = r.train_loss.dropna("step")
        label = f"{r.loss.item()}, {r.activation.item()}, {r.norm.item()}, {_lr_label(r)}"
        curves[1].semilogy(loss.step, loss, color=color, ls=ls, lw=1, label=label)
    curves[0].axhline(1, color="k", ls="--", lw=0.8)
    curves[0].set_yscale("log")
    curves[0].set_ylabel("sharpness / (2/lr) (log; 1: edge of stability)")
    curves[1].set_ylabel("training loss (log)")
    for a in curves:
        a.set_xlabel("GD step")
    curves[1].legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1))
    sub[0].suptitle(title or "Regularity: outcome of large-LR GD per loss, activation and normalization", fontsize=11)
    _save(fig, png, pdf)
