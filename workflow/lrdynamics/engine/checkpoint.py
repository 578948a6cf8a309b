"""Resume state of a training job: when to save it, written atomically, verified before it
is trusted.

The state of a run (a trainer's ``state_dict``: weights, optimizer buffers, schedule
position, every generator, the partial record) lives next to the output, in
``<output folder>/.resume/<output name>.state``, a file Snakemake does not declare, so a
rerun of a killed job finds it. Its layout is a magic line, the SHA-256 of the payload,
and the payload (``torch.save``). It is written to a temporary name, flushed to disk and
renamed, so a kill during the write leaves the previous state (or none), never half a
file. On load, a wrong magic, digest or run config means a warning and a fresh start:
state is never mixed across runs and a damaged file never crashes the job.
"""

from __future__ import annotations

import hashlib
import io
import logging
import signal
import threading
import time
from pathlib import Path

import torch

from lrdynamics.engine.files import atomic_path

log = logging.getLogger(__name__)
MAGIC = b"lrdynamics resume state v1\n"


def resume_path(out_path) -> Path:
    out = Path(out_path)
    return out.parent / ".resume" / f"{out.name}.state"


def config_fingerprint(run_json: str) -> str:
    """SHA-256 of the canonical run config: the state belongs to this run only."""
    return hashlib.sha256(run_json.encode()).hexdigest()


def save_state(state: dict, path) -> None:
    """Write the state atomically (temporary file, fsync, rename)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_state(path, fingerprint: str, device) -> dict | None:
    """The saved state if it is whole and belongs to this run config; else None (warned)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
        if not data.startswith(MAGIC):
            raise ValueError("not a resume state file")
        digest, _, payload = data[len(MAGIC) :].partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode() != digest:
            raise ValueError("checksum mismatch (truncated or damaged)")
        # Our own file, its checksum verified: the record lists hold numpy arrays too.
        state = torch.load(io.BytesIO(payload), map_location=device, weights_only=False)
    except Exception as err:  # noqa: BLE001 (any damage means: start again)
        log.warning("resume state %s is unusable (%s): starting the run from scratch", path, err)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("resume state %s was written for another run config: starting the run from scratch", path)
        return None
    return state


def remove_state(path) -> None:
    """Delete the state (and its folder when empty) once the final output is written."""
    path = Path(path)
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


class Interrupted(Exception):
    """Training stopped on a signal after saving its resume state."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signal.Signals(signum).name}; resume state saved")
        self.signum = signum


class Checkpointing:
    """The resume state of one run: loaded once at the start; saved every
    ``every_updates`` updates, every ``every_seconds`` of wall time, and at once when
    SIGTERM, SIGINT or SIGUSR1 (SLURM's warning before the time limit) arrives; after a
    signal's save the loop stops (``Interrupted``). ``fingerprint`` ties the state to the
    run config (``config_fingerprint``)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def __init__(self, path: Path, fingerprint: str, every_updates: int | None, every_seconds: float | None):
        self.path, self.fingerprint = Path(path), fingerprint
        self.every_updates, self.every_seconds = every_updates, every_seconds
        self.last = time.monotonic()
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers only there
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame):
        log.warning("received %s: saving the resume state at the end of this update", signal.Signals(signum).name)
        self.signum = signum

    def load(self, device) -> dict | None:
        """The saved state of this run, or None (none, damaged, or another config's)."""
        return load_state(self.path, self.fingerprint, device)

    def due(self, done: int) -> bool:
        if self.signum is not None:
            return True
        if self.every_updates and done % self.every_updates == 0:
            return True
        return self.every_seconds is not None and time.monotonic() - self.last >= self.every_seconds

    def save(self, state: dict) -> None:
        save_state({"fingerprint": self.fingerprint, **state}, self.path)
        self.last = time.monotonic()
        log.info("resume state saved at update %d (%s)", state["next_update"], self.path)
        if self.signum is not None:
            raise Interrupted(self.signum)

    def remove(self) -> None:
        remove_state(self.path)
