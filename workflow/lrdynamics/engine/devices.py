"""Which device a training job uses, and the per-device layout and precision choices.

- ``resolve_device``: ``auto`` is CUDA when present, else the CPU.
- ``gpu_slot``: on a workstation several Snakemake jobs may share a GPU, up to
  ``jobs_per_gpu`` each. A job claims a slot by locking one file of a node-local folder
  (``flock``: the kernel releases it when the job dies, so a killed job never leaks its
  slot) and then uses that GPU only (``cuda:i``). Under SLURM the scheduler gave the job
  its GPU (``CUDA_VISIBLE_DEVICES``) and no slot is claimed.
- ``CHANNELS_LAST``: whether conv nets run in channels-last layout on each device type,
  chosen from ``make bench`` (``channels_last_speedup``); ``training.channels_last: auto``
  reads it.
- ``set_float32_precision``: TF32 off unless a run asks for it. PyTorch's cuDNN default
  lets convolutions use TF32 (10-bit mantissa), which would break the exactness
  experiments; they must compare float32 runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "float64": torch.float64}  # training.dtype, GD dtype

# Measured with workflow/bench/bench.py (PreResNet32, B=128, fp32, 1 thread): CPU
# 1.23x faster in channels-last on the 2-core development machine. CUDA not measured yet
# (no GPU lent), so it keeps PyTorch's default layout there.
CHANNELS_LAST = {"cpu": True, "cuda": False}


def resolve_device(name: str) -> torch.device:
    """'auto' means CUDA when present, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for but CUDA is not available (use device: auto or cpu)")
    return device


def describe_device(device: torch.device) -> str:
    """The device as a run file records it (with the GPU's name on CUDA)."""
    return str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")


def channels_last_hazard(model: torch.nn.Module) -> str | None:
    """A conv that oneDNN's CPU kernels mishandle in channels-last layout, or None.

    The backward of a strided 1x1 conv with fewer input channels than oneDNN's channel
    block (8 with AVX2, 16 with AVX-512) writes past a workspace (oneDNN issue #6035):
    heap corruption or wrong weight gradients. Seen here with torch 2.14.1: PreResNet32 at
    width 1/4 or 1/8 aborts ("double free or corruption"); tests/test_devices.py.
    """
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1) and m.in_channels < 16:
            return f"{name}: strided 1x1 conv with {m.in_channels} input channels (< 16)"
    return None


def use_channels_last(setting, device: torch.device, model: torch.nn.Module) -> bool:
    """``training.channels_last``: true/false as given; 'auto' per device type, conv nets only.

    On the CPU, a model with a ``channels_last_hazard`` stays in the default layout under
    'auto', and an explicit true is refused.
    """
    if not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        return False  # nothing to lay out
    hazard = channels_last_hazard(model) if device.type == "cpu" else None
    if setting == "auto":
        return CHANNELS_LAST.get(device.type, False) and hazard is None
    if setting and hazard:
        raise ValueError(
            f"training.channels_last: true is unsafe on the CPU for this model ({hazard}; oneDNN issue #6035 "
            "corrupts memory); use auto or false"
        )
    return bool(setting)


def set_float32_precision(tf32: bool) -> None:
    """Allow TF32 in CUDA matmuls and convolutions only when asked (off: true float32)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def slot_folder() -> Path:
    """Node-local folder of the GPU slot locks (GPUs are per machine)."""
    return Path(tempfile.gettempdir()) / f"lrdynamics-gpu-slots-{os.getuid()}"


def claim_slot(n_gpus: int, jobs_per_gpu: int, folder: Path, timeout_s: float | None = None, poll_s: float = 2.0):
    """Lock a free slot and return (gpu index, open lock file); None after ``timeout_s``.

    Slots are tried slot-major (slot 0 of every GPU first), which spreads jobs over GPUs.
    The lock lasts while the returned file stays open (or the process lives).
    """
    folder.mkdir(parents=True, exist_ok=True)
    start = last_log = time.monotonic()
    while True:
        for slot in range(jobs_per_gpu):
            for gpu in range(n_gpus):
                f = open(folder / f"gpu{gpu}-slot{slot}.lock", "a")  # noqa: SIM115 (held open on purpose)
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    f.close()
                    continue
                return gpu, f
        now = time.monotonic()
        if timeout_s is not None and now - start >= timeout_s:
            return None
        if now - last_log >= 60:
            last_log = now
            log.info("waiting for a GPU slot: all %d GPUs run %d job(s) each", n_gpus, jobs_per_gpu)
        time.sleep(poll_s)


@contextlib.contextmanager
def gpu_slot(device_name: str, jobs_per_gpu: int | None):
    """The device this job trains on; on a shared workstation GPU, hold a slot meanwhile."""
    device = resolve_device(device_name)
    if device.type != "cuda" or device.index is not None or not jobs_per_gpu or "SLURM_JOB_ID" in os.environ:
        yield device
        return
    gpu, lock = claim_slot(torch.cuda.device_count(), jobs_per_gpu, slot_folder())  # waits, no timeout
    try:
        torch.cuda.set_device(gpu)
        log.info("GPU slot claimed: cuda:%d (at most %d job(s) per GPU)", gpu, jobs_per_gpu)
        yield torch.device("cuda", gpu)
    finally:
        lock.close()
