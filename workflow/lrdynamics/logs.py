"""Logging set-up shared by the workflow's scripts: one log file per job, and stderr."""

from __future__ import annotations

import logging
import sys


def setup_logging(log_path=None, level=logging.INFO) -> None:
    """Send the package's log records to ``log_path`` (if given) and to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )

    def log_uncaught(kind, value, tb):
        # A job's traceback belongs in its log file, where Snakemake points the user.
        logging.getLogger("lrdynamics").critical("job failed", exc_info=(kind, value, tb))

    sys.excepthook = log_uncaught
