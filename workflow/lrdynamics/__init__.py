"""lrdynamics: learning rate, weight decay and gradient noise in normalized nets.

The package holds the science of the workflow; Snakemake rules and scripts only call
it. Importing the package (and ``lrdynamics.config``) does not import torch, so rule
files stay light.
"""

__version__ = "0.1.0"
