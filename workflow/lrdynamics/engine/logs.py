"""Logging: the set-up shared by the workflow's scripts (one log file per job, and
stderr), and the progress lines of long training jobs."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)


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


class Progress:
    """The wall time of a run (across resumes: ``elapsed_before`` seconds already spent)
    and its progress lines, at most every ``every_seconds``. ``tick`` reads the clock once
    per update; ``log_due`` and ``log`` use that reading."""

    def __init__(self, unit: str, total: int, first: int, elapsed_before: float, every_seconds: float):
        self.unit, self.total, self.first, self.every = unit, total, first, every_seconds
        self.elapsed_before = elapsed_before
        self.start = self.last = self.now = time.perf_counter() - elapsed_before

    def tick(self) -> None:
        self.now = time.perf_counter()

    def log_due(self) -> bool:
        return self.now - self.last >= self.every

    def log(self, done: int, text: str) -> None:
        """A progress line: ``done`` of ``total``, ``text``, the rate and the time left."""
        self.last = self.now
        rate = (done - self.first) / max(self.now - self.start - self.elapsed_before, 1e-9)
        log.info("%s %d/%d %s  %.1f %ss/s  ETA %.0f s", self.unit, done, self.total, text, rate, self.unit,
                 (self.total - done) / max(rate, 1e-9))  # fmt: skip

    def elapsed(self) -> float:
        """Seconds of this run so far, earlier segments included."""
        return time.perf_counter() - self.start
