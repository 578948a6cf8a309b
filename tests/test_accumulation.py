"""Gradient accumulation (``training.micro_batch_size``): the batch of B in micro-batches.

Without BatchNorm the accumulated gradient is the full-batch gradient; with BatchNorm it is
the gradient of ghost batches (each micro-batch normalized with its own statistics). Both
the single-run trainer and the ensemble's vectorized update accumulate.
"""

import pytest
import torch
import torch.nn.functional as F

from conftest import resolve, tiny_config
from lrdynamics.engine.ensemble import EnsembleTrainer, Members
from lrdynamics.engine.trainer import Trainer, accumulated_backward


def one_run(data_dir, **experiment):
    return next(iter(resolve(tiny_config(data_dir, **experiment))["runs"]["tiny"].values()))


def first_update(trainer) -> dict[str, torch.Tensor]:
    """The trainable weights after the trainer's first update."""
    trainer.start_updates()
    trainer.update(0)
    return {k: p.detach().clone() for k, p in trainer.model.named_parameters() if p.requires_grad}


def float64_run(data_dir, norm: str, micro: int | None, **training):
    return one_run(
        data_dir,
        model={"name": "mlp", "width": 16, "depth": 2, "norm": norm},
        training={"dtype": "float64", "batch_size": 50, "micro_batch_size": micro, **training},
    )


@pytest.mark.parametrize("norm", ["none", "ln", "gn"])
@pytest.mark.parametrize("micro", [7, 25, 50, 64])
def test_accumulated_update_is_the_full_batch_update_without_batchnorm(synth_data_dir, norm, micro):
    full = first_update(Trainer(float64_run(synth_data_dir, norm, None), threads=1))
    accumulated = first_update(Trainer(float64_run(synth_data_dir, norm, micro), threads=1))
    start = dict(Trainer(float64_run(synth_data_dir, norm, None), threads=1).model.named_parameters())
    moved = max(float((full[k] - start[k].detach()).abs().max()) for k in full)
    assert moved > 1e-7  # the update moved the weights: the comparison below can fail
    for k in full:
        torch.testing.assert_close(accumulated[k], full[k], rtol=0, atol=1e-12)


def test_accumulated_svag_update_is_the_full_batch_update(synth_data_dir):
    def run(micro):
        r = float64_run(synth_data_dir, "ln", micro)
        r["optimizer"]["svag"] = 4
        return r

    full, accumulated = (first_update(Trainer(run(m), threads=1)) for m in (None, 16))
    for k in full:
        torch.testing.assert_close(accumulated[k], full[k], rtol=0, atol=1e-12)


def test_batchnorm_accumulation_is_ghost_batch_normalization():
    """With BN, each micro-batch is normalized by its own statistics: the accumulated
    gradient is the share-weighted mean of the micro-batches' gradients, which is not the
    gradient of BN over the whole batch."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8, affine=False), torch.nn.Linear(8, 3))
    x, y = torch.randn(20, 5, dtype=torch.float64), torch.randint(0, 3, (20,))
    model = model.double()

    def grads():
        out = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        return out

    loss = accumulated_backward(lambda part: F.cross_entropy(model(x[part]), y[part]), 20, 8)
    accumulated = grads()
    ghost_loss = 0.0
    for part, share in ((slice(0, 8), 0.4), (slice(8, 16), 0.4), (slice(16, 20), 0.2)):
        part_loss = F.cross_entropy(model(x[part]), y[part]) * share
        part_loss.backward()
        ghost_loss += float(part_loss.detach())
    ghost = grads()
    F.cross_entropy(model(x), y).backward()
    full = grads()
    assert float(loss) == pytest.approx(ghost_loss, rel=1e-12)
    for a, g in zip(accumulated, ghost):
        torch.testing.assert_close(a, g, rtol=0, atol=1e-12)
    assert max(float((a - f).abs().max()) for a, f in zip(accumulated, full)) > 1e-6


def test_without_micro_batches_the_loss_is_unweighted():
    """micro None or >= n: one backward of the batch loss itself (the default path)."""
    w = torch.tensor([2.0], requires_grad=True)
    loss = accumulated_backward(lambda part: (w * torch.arange(4.0)[part]).mean(), 4, None)
    assert float(loss) == 3.0 and float(w.grad) == 1.5


def test_ensemble_accumulation_is_each_members_full_batch_update(synth_data_dir):
    def members(micro):
        run = float64_run(synth_data_dir, "ln", micro, ensemble=2)
        trainer = EnsembleTrainer(run, threads=1)
        m = Members(run, trainer.chunks[0], trainer.device, trainer.train, trainer.test, trainer.n_classes)
        m.start_updates()
        m.update(0)
        return {k: p.detach().clone() for k, p in m.params.items() if p.requires_grad}

    full, accumulated = members(None), members(9)
    for k in full:
        torch.testing.assert_close(accumulated[k], full[k], rtol=0, atol=1e-12)
