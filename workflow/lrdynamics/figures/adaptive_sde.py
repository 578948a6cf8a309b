"""Figures of the adaptive-SDE study (Malladi et al. 2022): the square-root scaling rule and adaptive
SVAG."""

from __future__ import annotations

import numpy as np

from lrdynamics.figures.common import FigureInputs, plt, save, sns, theme
from lrdynamics.figures.sde_validity import plot_svag_distance

RULE_ORDER = ("none", "linear", "sqrt")
RULE_TEXT = {"none": "no scaling", "linear": "linear rule", "sqrt": "square-root rule"}


def plot_adaptive_sqrt_scaling(inputs: FigureInputs, png, pdf=None) -> None:
    """Test accuracy against epochs, a line per kappa, a panel per (optimizer, rule); and
    the final test accuracy against kappa per rule, whose spread the rules are judged by."""
    adaptive, title = inputs.analysis, inputs.title
    rules = [r for r in RULE_ORDER if r in adaptive.scaling_rule.values]
    opts = list(adaptive.optimizer.values)
    theme()
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
    save(fig, png, pdf, title=f"{title}\nBatch size x kappa under each scaling rule{note}")


def plot_adaptive_svag(inputs: FigureInputs, png, pdf=None) -> None:
    """Test accuracy against effective epochs, a line per SVAG l, a row per optimizer;
    each l's distance from the largest l."""
    adaptive, title = inputs.analysis, inputs.title
    opts = list(adaptive.optimizer.values)
    theme()
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
    heading = f"{title}\nSVAG for Adam/RMSprop converges to their SDE as l grows: curves should collapse{note}"
    save(fig, png, pdf, title=heading)
