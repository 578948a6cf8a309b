"""Helpers of the benchmark scripts (workflow/bench/bench*.py)."""

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


def _own_cpu_s() -> float:
    """CPU seconds of this process and its children (DataLoader workers), live or ended."""
    total = sum(os.times()[:4])
    me, tick = str(os.getpid()), os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid; then utime, stime are fields 14 and 15 of stat
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class ForeignLoad:
    """Cores' worth of CPU used by other processes (not ours nor our children) while the
    block runs (None if unknown)."""

    def __enter__(self):
        self.t, self.busy, self.own = time.perf_counter(), _busy_cpu_s(), _own_cpu_s()
        return self

    def __exit__(self, *exc):
        busy = _busy_cpu_s()
        wall = time.perf_counter() - self.t
        own = _own_cpu_s() - self.own
        self.cores = None if busy is None else max(0.0, (busy - self.busy - own) / wall)
