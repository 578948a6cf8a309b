"""Figures of the exponential-LR study (Li & Arora 2020): equivalence, weight norm, schedules."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import xarray as xr

from lrdynamics.engine.schedules import build_schedule
from lrdynamics.figures.common import FigureInputs, long_frame, plt, run_label, save, sns, theme, unperturbed


def plot_explr_equivalence(inputs: FigureInputs, png, pdf=None) -> None:
    """Per pair: test accuracy of both formulations overlaid; logit difference vs chaos floor."""
    analysis = inputs.analysis
    pairs = list(analysis.pair.values)
    theme()
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
    heading = (
        f"{analysis.attrs['title']}\n(dtype {analysis.dtype.values[0]}; equal curves and a logit gap at the chaos "
        "floor mean the same trajectory)"
    )
    save(fig, png, pdf, title=heading)


def plot_explr_weight_norm(inputs: FigureInputs, png, pdf=None) -> None:
    """Weight norm, LR, effective LR and test accuracy of WD vs its exponential counterpart."""
    runs, title = inputs.runs, inputs.title
    runs = unperturbed(runs)
    df = long_frame(runs, ["total_weight_norm", "learning_rate", "total_effective_lr", "test_accuracy"])
    df["run"] = [
        "exponential counterpart, no WD" if "wd_as_exp_lr=true" in r else "with WD" for r in df["run"]
    ]  # fmt: skip
    theme()
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
    heading = (
        f"{title or attrs['experiment']}\nlr {attrs['lr0']}, WD {attrs['wd0']}, momentum {attrs['momentum']}: "
        "the counterpart's norm grows exponentially while its effective LR and accuracy match the WD run"
    )
    save(fig, png, pdf, title=heading)


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


def plot_texp_vs_step(inputs: FigureInputs, png, pdf=None) -> None:
    """One column per experiment: LR at every step, effective LR, test accuracy (seed means);
    for a pair of seed ensembles (``decay_equilibrium``) also the function-space distance of
    the pair against its matched floor, with the time they meet."""
    experiments, titles = inputs.by_experiment, inputs.titles
    pairs = inputs.analyses.get("decay_equilibrium")
    compared = set(pairs.comparison.values) if pairs is not None else set()
    theme()
    n = len(experiments)
    rows = 4 if compared else 3
    fig, axes = plt.subplots(rows, n, figsize=(5.6 * n, 3.5 * rows), constrained_layout=True, squeeze=False)
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
        ax.set_title(textwrap.fill(titles.get(name) or name, 70), fontsize=10)
        ax.legend(fontsize=8, title=None)
        sns.lineplot(data=df, y="total_effective_lr", ax=axes[1, j], legend=False, **common)
        axes[1, j].set_yscale("log")
        axes[1, j].set_ylabel("effective LR $\\eta/\\|w\\|^2$ (log)")
        sns.lineplot(data=df, y="test_accuracy", ax=axes[2, j], legend=False, **common)
        axes[2, j].set_ylabel("test accuracy")
        if rows == 4:
            ax = axes[3, j]
            if name not in compared:
                ax.set_axis_off()
                continue
            c = pairs.sel(comparison=name)
            ax.plot(c.epoch, c.l1_distance_to_reference, color="C3", label="distance D (disjoint halves)")
            ax.plot(c.epoch, c.l1_matched_floor, color="C3", ls=":", label="matched floor F")
            spe = float(c.step[-1]) / float(c.epoch[-1])  # steps per epoch
            ax.axvline(float(c.history_switch_step) / spe, color="0.5", lw=0.8, ls="--", label="last decay")
            t = float(c.history_equilibrium_step)
            if np.isfinite(t):
                ax.axvline(t / spe, color="C2", lw=1.2, label=f"meet: step {t:g}")
            ax.set_xlabel("epoch")
            ax.set_ylabel("l1 distance of label distributions")
            ax.legend(fontsize=8)
    save(fig, png, pdf, title="Step decay, its exponential counterparts, and decays of WD instead of LR", fontsize=12)
