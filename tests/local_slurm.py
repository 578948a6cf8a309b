"""A real single-node SLURM cluster on localhost for the tests (Debian's slurm-wlm + munge).

As root, with its state, spool, logs and pid files in a temporary folder (the set-up and
its traps are in the comments below). ``unavailable_reason()`` says
why it cannot start here (the tests are then skipped with that reason); ``LocalSlurm``
starts the daemons and stops exactly those it started, by their PIDs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scontrol")
CONF_LINK = Path("/etc/slurm/slurm.conf")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
INSTALL_HINT = "apt-get install slurmctld slurmd slurm-client munge (make test does it as root)"


def unavailable_reason() -> str | None:
    """Why a local SLURM cannot be started here (None: it can)."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"SLURM/munge binaries not found ({', '.join(missing)}): {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    if CONF_LINK.exists() and not CONF_LINK.is_symlink():
        return f"{CONF_LINK} is a real cluster's config: not touching it"
    if not Path("/etc/munge/munge.key").exists():
        return "no /etc/munge/munge.key (reinstall munge)"
    return None


def _munge_works() -> bool:
    if not MUNGE_SOCKET.exists():
        return False
    proc = subprocess.run("munge -n | unmunge", shell=True, capture_output=True, timeout=10)
    return proc.returncode == 0


def _slurm_conf(root: Path, host: str, cpus: int, memory_mb: int) -> str:
    return "\n".join(
        [
            "ClusterName=lrdynamics-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"StateSaveLocation={root}/state",
            f"SlurmdSpoolDir={root}/spool",
            f"SlurmctldPidFile={root}/slurmctld.pid",
            f"SlurmdPidFile={root}/slurmd.pid",
            f"SlurmctldLogFile={root}/slurmctld.log",
            f"SlurmdLogFile={root}/slurmd.log",
            "SlurmctldPort=16817",
            "SlurmdPort=16818",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "ReturnToService=2",
            # finished jobs stay visible to squeue/scontrol (the plugin's status checks)
            "MinJobAge=600",
            "SchedulerParameters=sched_interval=1",
            "MpiDefault=none",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


class LocalSlurm:
    """Start/stop munged (unless one already answers), slurmctld and slurmd."""

    def __init__(self, root: Path, cpus: int = 2, memory_mb: int = 16000):
        self.root = Path(root)
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.pid_files: list[Path] = []  # in stop order
        self.linked = False

    def _run(self, *command: str) -> None:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.strip() or proc.stdout.strip()}")

    def start(self, timeout: float = 60) -> None:
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        host = socket.gethostname().split(".")[0]
        conf = self.root / "slurm.conf"
        conf.write_text(_slurm_conf(self.root, host, self.cpus, self.memory_mb))
        # the jobstep plugin drops SLURM_CONF before its inner srun: the default path must work
        CONF_LINK.parent.mkdir(parents=True, exist_ok=True)
        if CONF_LINK.is_symlink():
            CONF_LINK.unlink()  # left by an earlier test run that was killed
        CONF_LINK.symlink_to(conf)
        self.linked = True
        try:
            if not _munge_works():
                # munge's own folders (the temp folder is not readable by user munge)
                Path("/run/munge").mkdir(exist_ok=True)
                shutil.chown("/run/munge", "munge", "munge")
                self._run("runuser", "-u", "munge", "--", "munged")
                self.pid_files.insert(0, MUNGE_SOCKET.parent / "munged.pid")
            self._run("slurmctld", "-c")
            self.pid_files.insert(0, self.root / "slurmctld.pid")
            self._run("slurmd")
            self.pid_files.insert(0, self.root / "slurmd.pid")
            self._wait_idle(timeout)
        except Exception:
            self.stop()
            raise

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
            state = proc.stdout.strip()
            if state in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the local SLURM node did not become idle (sinfo: {state!r}); see {self.root}/*.log")

    def stop(self) -> None:
        """Stop the daemons this object started (slurmd, slurmctld, munged), by PID."""
        for pid_file in self.pid_files:
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            _terminate(pid)
        self.pid_files = []
        if self.linked and CONF_LINK.is_symlink():
            CONF_LINK.unlink()
        self.linked = False


def _terminate(pid: int, grace: float = 10) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
