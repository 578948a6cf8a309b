"""One run outside Snakemake: a resolved run config in, its netCDF run file out.

    python -m lrdynamics.train RUN_CONFIG.json OUT.nc

RUN_CONFIG is a resolved run config: the JSON in any run file's ``config_json`` (an SGD
run of ``experiments`` or a full-batch GD run of ``gd_experiments``); with
``training.ensemble: K`` it trains the K seeds ``seed`` .. ``seed+K-1`` in one job, into one
file. A run stopped by a
signal saves its resume state and exits with 128 + the signal number; the same command
continues it.
"""

from __future__ import annotations

import argparse
import json
import logging

from lrdynamics.config import deep_merge, schema_defaults
from lrdynamics.engine.contract import drop_ensemble_of_one, run_schema
from lrdynamics.engine.job import Interrupted, train
from lrdynamics.engine.logs import setup_logging

log = logging.getLogger("lrdynamics.train")
__all__ = ["main", "train"]
# Keys of a resolved run that no default can fill (a file's config_json has them all).
REQUIRED_KEYS = {
    "run": ("experiment", "run", "device", "dataset_dir", "model", "training"),
    "gd_run": ("experiment", "run", "device", "dataset_dir", "model", "loss", "steps"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrdynamics.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_config", help="resolved run config (JSON; the config_json of any run file)")
    parser.add_argument("out", help="output netCDF path")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--checkpoint-every-updates", type=int, default=None, help="save resume state this often")
    parser.add_argument(
        "--checkpoint-every-seconds", type=float, default=600.0, help="save resume state this often (wall time)"
    )
    args = parser.parse_args(argv)
    setup_logging()
    try:
        with open(args.run_config) as f:
            run = json.load(f)
        schema = run_schema(run) if isinstance(run, dict) else "run"  # (a list is "missing" every key)
        missing = [k for k in REQUIRED_KEYS[schema] if k not in run]
    except (OSError, json.JSONDecodeError) as err:
        parser.error(f"run config {args.run_config}: {err}")
    if missing:
        parser.error(
            f"run config {args.run_config}: not a resolved run config (missing {', '.join(missing)}); "
            "use the config_json attribute of a run file"
        )
    # The config_json of a run file written before a key existed lacks it: the default is used.
    run = drop_ensemble_of_one(deep_merge(schema_defaults({"$ref": f"#/$defs/{schema}"}), run))
    try:
        train(run, args.out, args.threads, None, args.checkpoint_every_updates, args.checkpoint_every_seconds)
    except Interrupted as stop:
        log.warning("%s; rerun the same command to continue", stop)
        return 128 + stop.signum
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
