"""Figures of the SVAG / SDE-validity study (Li, Malladi & Arora 2021): SVAG convergence, the
linear scaling rule, gradient signal and noise."""

from __future__ import annotations

import numpy as np
import xarray as xr

from lrdynamics.figures.common import FigureInputs, plt, save, sns, theme


def plot_svag_convergence(inputs: FigureInputs, png, pdf=None) -> None:
    """Test accuracy against effective steps, one line per l; distance from the largest l."""
    svag, title = inputs.analysis, inputs.title
    theme()
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
    save(fig, png, pdf, title=f"{title}\nSVAG converges to the SDE of SGD as l grows: curves should collapse{note}")


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


def plot_lsr_validity(inputs: FigureInputs, png, pdf=None) -> None:
    """Final test accuracy against batch size under LSR, one panel per net, B* marked."""
    lsr, titles = inputs.analysis, inputs.titles
    nets = lsr_nets(lsr, titles)
    theme()
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
    save(fig, png, pdf, title="Linear scaling rule: accuracy holds up to about the predicted critical batch size")


def plot_noise_signal(inputs: FigureInputs, png, pdf=None) -> None:
    """G, N = tr Sigma_1 and N/(B G) against epochs, one line per batch size; a row per net."""
    lsr, titles = inputs.analysis, inputs.titles
    nets = lsr_nets(lsr, titles)
    theme()
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
    save(fig, png, pdf, title="Gradient signal and noise during training (negative estimates of G not drawn)")
