"""The training job: one resolved run config in, one run file out, for minibatch runs
(``engine.trainer.Trainer``) and full-batch GD runs (``engine.gd.GradientDescent``) alike.

The job claims its device (a GPU slot on a shared workstation), builds the trainer,
continues from the run's resume state when one is saved, trains with the state saved on
a cadence and on SIGTERM/SIGINT/SIGUSR1 (then ``Interrupted``), writes the run file
atomically and removes the state.
"""

from __future__ import annotations

import logging

from lrdynamics.engine.checkpoint import Checkpointing, Interrupted, config_fingerprint, resume_path
from lrdynamics.engine.contract import ensemble_size, run_config_json, run_schema
from lrdynamics.engine.devices import gpu_slot
from lrdynamics.engine.ensemble import EnsembleTrainer
from lrdynamics.engine.runfile import write_atomic
from lrdynamics.engine.trainer import Trainer

log = logging.getLogger(__name__)
__all__ = ["Interrupted", "trainer_class", "train"]


def trainer_class(run: dict):
    """The engine of a resolved run: full-batch GD for ``gd_experiments`` runs, a seed
    ensemble for ``training.ensemble`` > 1, else the minibatch trainer."""
    if run_schema(run) == "gd_run":
        # imported here: its Lanczos (scipy) costs every minibatch job 0.25 s at start-up
        from lrdynamics.engine.gd import GradientDescent

        return GradientDescent
    return EnsembleTrainer if ensemble_size(run) > 1 else Trainer


def train(
    run: dict,
    out_path,
    threads: int | None = None,
    jobs_per_gpu: int | None = None,
    checkpoint_every_updates: int | None = None,
    checkpoint_every_seconds: float | None = 600.0,
):
    """Train one run and write its netCDF file; return the dataset.

    ``jobs_per_gpu``: on a workstation with GPUs, share each GPU with at most this many
    jobs (``engine.devices.gpu_slot``); None uses the device as resolved. The resume state
    (``engine.checkpoint``) is saved every ``checkpoint_every_updates`` updates (GD steps)
    and every ``checkpoint_every_seconds``, and on SIGTERM/SIGINT/SIGUSR1, after which
    ``Interrupted`` is raised; a rerun continues from it.
    """
    with gpu_slot(run["device"], jobs_per_gpu) as device:
        trainer = trainer_class(run)(run, threads, device)
        checkpoint = Checkpointing(
            resume_path(out_path),
            config_fingerprint(run_config_json(run)),
            checkpoint_every_updates,
            checkpoint_every_seconds,
        )
        state = checkpoint.load(trainer.device)
        log.info("%s", trainer.describe())
        with checkpoint:
            status = trainer.fit(state, checkpoint)
        ds = trainer.dataset(status)
        write_atomic(ds, out_path)
        checkpoint.remove()
        log.info("wrote %s (%s, %.1f steps/s, %.1f s)", out_path, status["status"], status["steps_per_second"],
                 status["wall_time_s"])  # fmt: skip
        return ds
