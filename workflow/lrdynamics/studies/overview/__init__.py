"""Overview: the training curves of any experiment (loss, accuracy, LR, weight norm,
effective LR, angular update), the first look at a grid."""

from lrdynamics.studies.catalog import Figure, Study

STUDY = Study(
    name="overview",
    category="Foundation",
    figures=(Figure("training_curves", "lrdynamics.figures.overview:plot_training_curves", reads_runs=True),),
)
