"""The overview figure: the training curves of an experiment's runs."""

from __future__ import annotations

from lrdynamics.figures.common import FigureInputs, long_frame, plt, save, sns, theme


def plot_training_curves(inputs: FigureInputs, png, pdf=None) -> None:
    """Loss, accuracy, LR, weight norm, effective LR and angular update against epoch.

    Lines are the mean over seeds of runs with the same other hyperparameters; the band
    is their range (min to max).
    """
    runs, title = inputs.runs, inputs.title
    variables = [
        "train_loss", "test_loss", "train_accuracy", "test_accuracy", "learning_rate",
        "intrinsic_lr", "total_weight_norm", "total_effective_lr", "total_angular_update",
    ]  # fmt: skip
    df = long_frame(runs, variables)
    theme()
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
    heading = (
        f"{title or exp['experiment']}\n{exp['model']} ({exp['norm']}), {exp['dataset']}, B={exp['batch_size']}, "
        f"momentum {exp['momentum']}; mean over {n_seeds} seed(s), band = min..max"
    )
    save(fig, png, pdf, title=heading)
