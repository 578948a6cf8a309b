"""Configuration: the schema, the resolution of a config into runs, and the checks that
run before any job starts (``schema``, ``runs``, ``checks``); what the rules read from a
resolved config (``layout``); the generated key reference of config/README.md
(``reference``).

Torch-free: the Snakefile and every job import it (it reads the engine's torch-free
facts and the study catalog's declarations, nothing that imports torch or xarray).
"""

from lrdynamics.config.runs import (
    engine_settings,
    experiment_runs,
    gd_experiment_runs,
    grid_aliases,
    load_config,
    load_config_file,
)
from lrdynamics.config.schema import (
    ConfigError,
    deep_merge,
    load_schema,
    resolve_ref,
    schema_defaults,
    validate,
)
from lrdynamics.engine.contract import format_value, run_config_json
from lrdynamics.studies import figure_experiments

__all__ = [
    "ConfigError",
    "deep_merge",
    "engine_settings",
    "experiment_runs",
    "figure_experiments",
    "format_value",
    "gd_experiment_runs",
    "grid_aliases",
    "load_config",
    "load_config_file",
    "load_schema",
    "resolve_ref",
    "run_config_json",
    "schema_defaults",
    "validate",
]
