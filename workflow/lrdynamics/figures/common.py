"""The shared style of the figures: what a plot function receives (``FigureInputs``),
legend labels of runs, runs as long data frames, saving PNG and PDF."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402

from lrdynamics.engine.contract import format_value  # noqa: E402
from lrdynamics.engine.runfile import drop_hyperparameter_dims  # noqa: E402

# pyplot and seaborn come from here, after the headless backend is chosen.
__all__ = ["FigureInputs", "long_frame", "plt", "run_label", "save", "sns", "theme", "unperturbed"]


@dataclass
class FigureInputs:
    """What a figure is drawn from: the runs of its experiments (when it reads runs), their
    titles by experiment name in the figure's order, and the analysis files it reads by
    name (``results/analysis/<name>.nc``)."""

    runs: list[xr.Dataset] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)
    analyses: dict[str, xr.Dataset] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """The first experiment's title ("" without one)."""
        return next(iter(self.titles.values()), "")

    @property
    def experiment(self) -> str | None:
        """The first experiment's name (None: the figure reads none)."""
        return next(iter(self.titles), None)

    @property
    def analysis(self) -> xr.Dataset | None:
        """The first analysis file it reads."""
        return next(iter(self.analyses.values()), None)

    @property
    def by_experiment(self) -> dict[str, list[xr.Dataset]]:
        """The runs of each experiment, in the figure's order."""
        return {name: [ds for ds in self.runs if ds.attrs["experiment"] == name] for name in self.titles}


def theme(style: str = "whitegrid") -> None:
    """The seaborn theme every figure starts from."""
    sns.set_theme(style=style, context="notebook")


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


# Drawn across the top of every figure when set: a rehearsal's mark (plot_figure.py sets it).
BANNER = ""


def save(fig, png, pdf=None, title: str | None = None, fontsize: int = 11) -> None:
    """Give the figure its title (``title``: the suptitle) and write the PNG (and PDF)."""
    if title is not None:
        fig.suptitle(title, fontsize=fontsize)
    if BANNER:
        fig.text(0.5, 1.04, "\n".join(textwrap.wrap(BANNER, 90)), ha="center", va="bottom", color="crimson",
                 fontsize=12, fontweight="bold", transform=fig.transFigure)  # fmt: skip
    fig.savefig(png, dpi=130, bbox_inches="tight")
    if pdf:
        fig.savefig(pdf, bbox_inches="tight")
    plt.close(fig)


def unperturbed(runs: list[xr.Dataset]) -> list[xr.Dataset]:
    """Runs that are not chaos-floor twins (training.perturb_init false)."""
    return [ds for ds in runs if not json.loads(ds.attrs["config_json"])["training"]["perturb_init"]]
