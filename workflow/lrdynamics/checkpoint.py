"""Resume state of a training job: written atomically, verified before it is trusted.

The state of a run (``Training.state_dict``: weights, optimizer buffers, schedule position,
every generator, the partial record) lives next to the output, in
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
import os
from pathlib import Path

import torch

log = logging.getLogger("lrdynamics.checkpoint")
MAGIC = b"lrdynamics resume state v1\n"


def resume_path(out_path) -> Path:
    out = Path(out_path)
    return out.parent / ".resume" / f"{out.name}.state"


def config_fingerprint(run_json: str) -> str:
    """SHA-256 of the canonical run config: the state belongs to this run only."""
    return hashlib.sha256(run_json.encode()).hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_state(state: dict, path) -> None:
    """Write the state atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


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
