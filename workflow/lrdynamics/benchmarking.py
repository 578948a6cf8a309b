"""Helpers of the benchmark scripts (workflow/scripts/bench_*.py)."""

from __future__ import annotations

import os
import time


def _busy_cpu_s():
    """CPU seconds the whole machine has been busy (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class ForeignLoad:
    """Cores' worth of CPU used by other processes while the block runs (None if unknown)."""

    def __enter__(self):
        self.t, self.busy, self.own = time.perf_counter(), _busy_cpu_s(), sum(os.times()[:2])
        return self

    def __exit__(self, *exc):
        busy = _busy_cpu_s()
        wall = time.perf_counter() - self.t
        own = sum(os.times()[:2]) - self.own
        self.cores = None if busy is None else max(0.0, (busy - self.busy - own) / wall)
