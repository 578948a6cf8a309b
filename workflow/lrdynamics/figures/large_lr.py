"""Figures of the large-LR study: edge of stability, catapult, balancing, regularity."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.colors import ListedColormap

from lrdynamics.figures.common import FigureInputs, plt, save, sns, theme
from lrdynamics.studies.large_lr.catapult import CATAPULT_OUTCOMES
from lrdynamics.studies.large_lr.eos import OUTCOMES


def _gd_runs(eos: xr.Dataset, experiment: str) -> xr.Dataset:
    return eos.isel(run=np.flatnonzero(eos.experiment.values == experiment))


def _lr_label(r: xr.Dataset) -> str:
    """ "c=<multiple>" for runs with lr = c x 2/S0, else "lr=<lr>"."""
    c = float(r.lr_multiple)
    return f"c={c:g}" if np.isfinite(c) else f"lr={float(r.lr):.3g}"


def plot_edge_of_stability(inputs: FigureInputs, png, pdf=None) -> None:
    """Sharpness against GD step with a dashed line at 2/lr per run; training loss below."""
    eos, experiment, title = inputs.analysis, inputs.experiment, inputs.title
    d = _gd_runs(eos, experiment)
    d = d.isel(run=np.argsort(d.lr.values))
    theme()
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
    save(fig, png, pdf, title=title or "Edge of stability")


def plot_catapult(inputs: FigureInputs, png, pdf=None) -> None:
    """Per loss: loss (log) and lr x lambda_t against t per eta*lambda0 (lines at 2 and 4);
    last column: spike height and final lr x lambda against eta*lambda0."""
    toy = inputs.analysis
    theme()
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
    heading = f"{toy.attrs['title']}, $\\lambda_0$ = {toy.attrs['lambda0']:.3f}: catapult for 2 < $\\eta\\lambda_0$ < 4"
    save(fig, png, pdf, title=heading)


def plot_balancing(inputs: FigureInputs, png, pdf=None) -> None:
    """Toy: |x| - |y| over steps per c (square loss), the final imbalance against c per loss
    and problem, and lr x sharpness; with a GD experiment, its runs' (||W1||-||W2||)^2."""
    toy, eos, experiment = inputs.analyses["balancing_toy"], inputs.analyses.get("eos"), inputs.experiment
    theme()
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
    save(fig, png, pdf, title=f"{toy.attrs['title']}")


def plot_regularity(inputs: FigureInputs, png, pdf=None) -> None:
    """Outcome per (loss, activation) x (norm, c) as a coloured table, and each run's
    sharpness / (2/lr) and loss."""
    eos, experiment, title = inputs.analysis, inputs.experiment, inputs.title
    d = _gd_runs(eos, experiment)
    theme("white")
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
    theme()
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
    save(fig, png, pdf)
