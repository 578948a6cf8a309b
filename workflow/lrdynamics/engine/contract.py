"""The run file's contract, declared once: every variable and coordinate a run file may
hold, with its ``long_name``, ``units`` and dimensions; the statuses; the canonical
text of a resolved run; how a hyperparameter value is written in a run name.

Plain Python (no torch, numpy or xarray): the config (``lrdynamics.config``, imported by
the Snakefile and every job) reserves these names for run names, and
``lrdynamics.engine.runfile`` builds and checks files from them.
"""

from __future__ import annotations

import json

# name: (long_name, units, dims) of every variable an SGD (minibatch) run writes.
VARIABLES = {
    "train_loss": ("cross-entropy loss on the evaluation subset of the training set (eval mode)", "1", ("step",)),
    "train_accuracy": ("accuracy on the evaluation subset of the training set (eval mode)", "1", ("step",)),
    "test_loss": ("cross-entropy loss on the test set (eval mode)", "1", ("step",)),
    "test_accuracy": ("accuracy on the test set (eval mode)", "1", ("step",)),
    "minibatch_loss": ("mean training minibatch loss since the previous evaluation (train mode)", "1", ("step",)),
    "learning_rate": ("learning rate eta in force at this step", "1", ("step",)),
    "weight_decay": ("weight decay lambda in force at this step", "1", ("step",)),
    "intrinsic_lr": ("intrinsic learning rate eta*lambda/(1-momentum)", "1", ("step",)),
    "weight_norm": ("Frobenius norm of each weight layer", "1", ("step", "layer")),
    "total_weight_norm": ("norm of all weight layers together", "1", ("step",)),
    "effective_lr": ("effective learning rate eta/|w|^2 of each weight layer", "1", ("step", "layer")),
    "total_effective_lr": ("effective learning rate eta/|w|^2 of all weight layers together", "1", ("step",)),
    "angular_update": ("angle between each layer's weights before and after the last update", "rad", ("step", "layer")),
    "total_angular_update": (
        "angle between all weights before and after each update, mean over the updates since the previous evaluation",
        "rad",
        ("step",),
    ),
    "grad_norm": ("norm of the minibatch loss gradient of the last update (weight decay excluded)", "1", ("step",)),
    "momentum_buffer_norm": (
        "root mean square over the updates since the previous evaluation of the norm of the SGD momentum "
        "buffer v of all weight layers together, at the weights' true scale (NaN without momentum or with an "
        "adaptive optimizer)",
        "1",
        ("step",),
    ),
}
# Written only when the run asks for them (evaluation.logit_samples, prediction_samples > 0,
# direction_anchor set).
OPTIONAL_VARIABLES = {
    "test_logits": ("logits of the first test images (eval mode)", "1", ("step", "sample", "class")),
    "test_predictions": ("predicted label of the first test images (eval mode)", "1", ("step", "sample")),
    "direction_distance": (
        "l2 distance between the unit direction of all weight layers together and that direction at the "
        "anchor evaluation (evaluation.direction_anchor; NaN before it)",
        "1",
        ("step",),
    ),
}
# Written when the run measures gradient noise (gradient_noise.every), along noise_step.
NOISE_VARIABLES = {
    "gradient_signal": (
        "gradient signal G = |grad L|^2 (unbiased estimate over independent minibatches)",
        "1",
        ("noise_step",),
    ),
    "batch_gradient_noise": ("minibatch gradient noise tr Sigma_B at the run's batch size B", "1", ("noise_step",)),
    "gradient_noise": ("per-example gradient noise N = tr Sigma_1 = tr Sigma_B * B(n-1)/(n-B)", "1", ("noise_step",)),
    "critical_batch_size": (
        "predicted critical batch size B* = (C^2-1) N/G of the linear scaling rule",
        "1",
        ("noise_step",),
    ),
    "noise_weight_norm": ("norm of all weight layers together at the measurement", "1", ("noise_step",)),
}
# Written only by gradient_noise.estimator: per_example (the adaptive-SDE authors' SNR needs it).
OPTIONAL_NOISE_VARIABLES = {
    "example_gradient_norm": (
        "mean single-example gradient norm mean_i |g_i| (gradient_noise.estimator: per_example)",
        "1",
        ("noise_step",),
    ),
}
# Coordinates of an SGD run file: name: (long_name, units or None, dim).
COORDINATES = {
    "step": ("effective steps: updates done / l (SVAG), / l^2 (adaptive SVAG), updates done", "1", "step"),
    "updates_done": ("optimizer updates done", "1", "step"),
    "epoch": ("passes over the training set", "1", "step"),
    "layer": ("weight layer (parameter name)", None, "layer"),
    "noise_step": ("effective steps done", "1", "noise_step"),
    "noise_epoch": ("passes over the training set (effective)", "1", "noise_step"),
}
# name: (long_name, units, dims) of every variable a full-batch GD run writes.
GD_VARIABLES = {
    "train_loss": ("training loss on the GD subset (the objective, train mode)", "1", ("step",)),
    "train_accuracy": ("accuracy on the GD subset (train mode)", "1", ("step",)),
    "layer_norm": ("Frobenius norm of each weight layer", "1", ("step", "layer")),
    "sharpness": ("top Hessian eigenvalues of the training loss (Lanczos)", "1", ("sharpness_step", "eigenvalue")),
    "hessian_products": ("Hessian-vector products used by the sharpness measurement", "1", ("sharpness_step",)),
}
GD_COORDINATES = {
    "step": ("GD steps done", "1", "step"),
    "sharpness_step": ("GD steps done at the sharpness measurement", "1", "sharpness_step"),
    "eigenvalue": ("rank of the Hessian eigenvalue", None, "eigenvalue"),
    "layer": ("weight layer (parameter name)", None, "layer"),
}
# Run-file attribute: (run section, key) of the resolved run.
KEY_HYPERPARAMETERS = {
    "model": ("model", "name"),
    "norm": ("model", "norm"),
    "optimizer": ("optimizer", "name"),
    "momentum": ("optimizer", "momentum"),
    "svag": ("optimizer", "svag"),
    "schedule": ("schedule", "name"),
    "lr0": ("schedule", "lr"),
    "wd0": ("schedule", "wd"),
    "batch_size": ("training", "batch_size"),
    "epochs": ("training", "epochs"),
    "seed": ("training", "seed"),
}
STATUSES = ("completed", "diverged")


def run_outcome(first_bad_update: int = -1, updates_per_step: int = 1) -> dict:
    """A run's (or member's) ``status``, ``diverged_step`` and ``diverged_update``:
    completed, or diverged at its first non-finite update (>= 0)."""
    if first_bad_update < 0:
        return {"status": "completed", "diverged_step": -1, "diverged_update": -1}
    bad = first_bad_update
    return {"status": "diverged", "diverged_step": bad // updates_per_step, "diverged_update": bad}


# The ``kind`` of a full-batch GD run (its resolved run and its file say so); other runs have none.
GD_KIND = "full_batch_gd"
CONVENTIONS = "CF-1.10"
GLOBAL_ATTRIBUTES = ("Conventions", "title", "source", "history", "references", "config_json", "status")


# The dimensions of a single run (every other dimension of a run file is a grid hyperparameter).
RUN_DIMS = ("step", "layer", "sample", "class", "noise_step", "sharpness_step", "eigenvalue")

# Per-member outcome variables of an ensemble file, along SEED_DIM: (long_name, units, the
# single run's attribute they hold).
MEMBER_VARIABLES = {
    "member_status": ("status of each member: completed or diverged", "1", "status"),
    "member_diverged_step": ("effective step at which each member diverged (-1: it did not)", "1", "diverged_step"),
    "member_diverged_update": (
        "optimizer update at which each member diverged (-1: it did not)",
        "1",
        "diverged_update",
    ),  # fmt: skip
}
# Attributes of an ensemble file that no single run has.
ENSEMBLE_ATTRS = ("ensemble_size", "ensemble_chunk", "member_updates_per_second", "members_diverged")


# Names a run file uses for its own dimensions, coordinates and variables: a grid alias
# equal to one of them is spelled out in full instead (lrdynamics.config.runs.grid_aliases).
RESERVED_NAMES = frozenset(
    [
        *VARIABLES,
        *OPTIONAL_VARIABLES,
        *NOISE_VARIABLES,
        *OPTIONAL_NOISE_VARIABLES,
        *COORDINATES,
        *GD_VARIABLES,
        *GD_COORDINATES,
        *RUN_DIMS,
        *MEMBER_VARIABLES,
    ]  # fmt: skip
)


def format_value(value) -> str:
    """Compact, file-name-safe text of a hyperparameter value (repr for floats)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(format_value(v) for v in value) or "none"
    return str(value)


def run_name(hyperparameters: dict) -> str:
    """A run's name: its grid point as ``alias=value`` joined by ``_`` (``run``: no grid)."""
    return "_".join(f"{k}={format_value(v)}" for k, v in hyperparameters.items()) or "run"


# --- seed ensembles (training.ensemble): K runs of one grid point trained in one job -------
# The member dimension of an ensemble file, and the grid alias of training.seed: a member
# is the run that a grid over training.seed would have made.
SEED_DIM = "seed"
ENSEMBLE_KEYS = ("ensemble", "ensemble_chunk")


def ensemble_size(run: dict) -> int:
    """K of a resolved run. A run of one seed has no ensemble keys at all (the config drops
    them at K = 1, so that their introduction changed no run's config_json or name)."""
    k = run["training"].get("ensemble", 1)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"training.ensemble must be an integer >= 1, got {k!r}")
    return k


def _without_ensemble_keys(training: dict) -> None:
    for key in ENSEMBLE_KEYS:
        training.pop(key, None)


def drop_ensemble_of_one(run: dict) -> dict:
    """The run without ensemble keys when K = 1 (the form of a run of one seed)."""
    if "training" in run and run["training"].get("ensemble", 1) == 1:
        _without_ensemble_keys(run["training"])
    return run


def member_seeds(run: dict) -> list[int]:
    """The seeds of an ensemble's members: ``seed .. seed + K - 1``."""
    first = run["training"]["seed"]
    return list(range(first, first + ensemble_size(run)))


def member_run(run: dict, seed: int) -> dict:
    """The resolved run that an ensemble's member with ``seed`` is: the ensemble's run with
    that seed, no ensemble keys, the seed among its grid hyperparameters and in its name."""
    member = json.loads(json.dumps(run))
    _without_ensemble_keys(member["training"])
    member["training"]["seed"] = seed
    member["hyperparameters"] = {**run["hyperparameters"], SEED_DIM: seed}
    member["run"] = run_name(member["hyperparameters"])
    return member


def run_schema(run: dict) -> str:
    """The schema definition of a resolved run: ``gd_run`` for a full-batch GD run, else ``run``."""
    return "gd_run" if run.get("kind") == GD_KIND else "run"


def run_config_json(run: dict) -> str:
    """The canonical JSON text of a resolved run (rule params, the resume state's fingerprint)."""
    return json.dumps(run, sort_keys=True, indent=1)
