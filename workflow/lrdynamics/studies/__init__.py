"""The studies: one per paper, each declaring its figures and analysis files (``STUDY``
in its package), with the analyses themselves in the package's modules.

This module is the catalog the workflow reads: ``FIGURES`` and ``ANALYSES`` by name, in
report order. Importing it imports no torch or numpy (``catalog``).
"""

from lrdynamics.studies import adaptive_sde, exponential_lr, intrinsic_lr, large_lr, overview, sde_validity
from lrdynamics.studies.catalog import Analysis, Claim, Figure, Study, figure_experiments, load

STUDIES: tuple[Study, ...] = tuple(
    m.STUDY for m in (overview, exponential_lr, intrinsic_lr, sde_validity, adaptive_sde, large_lr)
)
FIGURES: dict[str, Figure] = {f.name: f for s in STUDIES for f in s.figures}
ANALYSES: dict[str, Analysis] = {a.name: a for s in STUDIES for a in s.analyses}
CATEGORY: dict[str, str] = {f.name: s.category for s in STUDIES for f in s.figures}
CLAIMS: dict[str, Claim] = {c.id: c for s in STUDIES for c in s.claims}

__all__ = [
    "ANALYSES",
    "CATEGORY",
    "CLAIMS",
    "Claim",
    "FIGURES",
    "STUDIES",
    "Analysis",
    "Figure",
    "Study",
    "figure_experiments",
    "load",
]
