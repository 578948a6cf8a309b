"""Writing files so that a kill never leaves half of one under the real name."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` to write; on success it is flushed to disk
    and renamed to ``path`` (then the folder is synced), on failure it is removed.

    A kill at any moment leaves either the previous file or the new one, never a mix;
    the temporary name (``.<name>.tmp-<pid>``) is never read by anything.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
