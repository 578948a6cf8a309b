"""Figures: the plot function of every figure, one module per study, on the shared
style of ``common``. Each has the signature ``plot(inputs: FigureInputs, png, pdf=None)``
and is named in its study's catalog entry (``lrdynamics.studies``)."""
