"""workflow/bench/cost.py: the counts and FLOPs behind the cost table, against hand counts
(no timing: the CPU measurement is left to the script)."""

import importlib.util
import math
import sys

import pytest
import torch
from torch import nn

from conftest import REPO, resolve, tiny_config

_spec = importlib.util.spec_from_file_location("bench_cost", REPO / "workflow" / "bench" / "cost.py")
cost = importlib.util.module_from_spec(_spec)
sys.modules["bench_cost"] = cost  # dataclasses look their module up
_spec.loader.exec_module(cost)

N_FMNIST = 60000  # the test config's dataset: Fashion-MNIST, no train_subset


def runs_of(tmp_path, datasets=None, **experiment):
    config = tiny_config(tmp_path, **experiment)
    if datasets:
        config["datasets"] = {"synth": {**config["datasets"]["synth"], **datasets}}
    return list(resolve(config)["runs"]["tiny"].values())


def test_linear_flops_are_two_in_out():
    assert cost.forward_flops(nn.Linear(7, 5), (7,)) == 2 * 7 * 5
    net = nn.Sequential(nn.Linear(12, 9), nn.ReLU(), nn.Linear(9, 4))
    assert cost.forward_flops(net, (12,)) == 2 * (12 * 9 + 9 * 4)


def test_engine_mlp_flops_per_image(tmp_path):
    # the test config's net: mlp width 32, depth 2 on 1x28x28 images, 10 classes
    run = runs_of(tmp_path)[0]
    flops, note = cost.model_forward_flops(run)
    assert note == ""
    assert flops == 2 * (784 * 32 + 32 * 32 + 32 * 10)


def test_fc_net_flops_per_example():
    # the GD nets: fc-tanh 2 x 200 on flattened CIFAR-10
    run = {"kind": "full_batch_gd", "dataset_spec": {"source": "cifar10"},
           "model": {"activation": "tanh", "width": 200, "depth": 2, "bias": True, "norm": "none"}}  # fmt: skip
    flops, _ = cost.model_forward_flops(run)
    assert flops == 2 * (3072 * 200 + 200 * 200 + 200 * 10)


def test_unbuildable_model_is_skipped_with_a_note(tmp_path):
    run = runs_of(tmp_path)[0]
    run["model"] = {**run["model"], "name": "vgg19"}
    flops, note = cost.model_forward_flops(run)
    assert flops is None and "vgg19" in note
    c = cost.sgd_run_cost(run)
    assert c.flops is None and c.updates > 0


def test_updates_are_epochs_times_batches(tmp_path):
    # test config: B = 50, 2 epochs; Fashion-MNIST's 60,000 images
    for run in runs_of(tmp_path):
        c = cost.sgd_run_cost(run)
        assert c.updates == 2 * math.ceil(N_FMNIST / 50)
        assert c.train_images == c.updates * 50
    (run,) = runs_of(tmp_path, datasets={"train_subset": 500}, training={"batch_size": 64, "epochs": 3})
    assert cost.sgd_run_cost(run).updates == 3 * math.ceil(500 / 64)
    (run,) = runs_of(tmp_path, datasets={"train_subset": 500}, training={"batch_size": 64, "epochs": 3,
                                                                       "drop_last": True})  # fmt: skip
    assert cost.sgd_run_cost(run).updates == 3 * (500 // 64)


def test_svag_multiplies_updates_by_l_and_images_by_2l(tmp_path):
    runs = runs_of(tmp_path, optimizer={"momentum": 0.0}, grid={"optimizer.svag": [1, 4]})
    by_l = {r["optimizer"]["svag"]: cost.sgd_run_cost(r) for r in runs}
    assert by_l[4].updates == 4 * by_l[1].updates == 4 * 2 * math.ceil(N_FMNIST / 50)
    assert by_l[4].train_images == 2 * 4 * by_l[1].train_images
    # adaptive SVAG: l^2 updates per effective step
    runs = runs_of(tmp_path, optimizer={"name": "adam", "momentum": 0.0}, grid={"optimizer.svag": [1, 2]})
    by_l = {r["optimizer"]["svag"]: cost.sgd_run_cost(r) for r in runs}
    assert by_l[2].updates == 4 * by_l[1].updates


def test_ensemble_members_and_evaluations_count(tmp_path):
    evaluation = {"every": 1, "unit": "epoch", "train_samples": 200, "test_samples": 100}
    (run,) = runs_of(tmp_path, training={"ensemble": 3}, evaluation=evaluation)
    c = cost.sgd_run_cost(run)
    assert c.members == 3
    assert c.eval_images == 3 * (200 + 100)  # evaluations at steps 0, 1 epoch, 2 epochs
    assert c.flops == pytest.approx(3 * c.forward_flops * (3 * c.train_images + c.eval_images))


def test_sharpness_measurements():
    assert cost.sharpness_steps(10000, 50) == 201  # step 0, every 50, the end
    assert cost.sharpness_steps(10, 3) == 5  # 0, 3, 6, 9, 10


def test_table_rows_and_total(tmp_path):
    config = resolve(tiny_config(tmp_path, grid={"training.seed": [0, 1]}))
    costs = cost.experiment_costs(config)
    (tiny,) = costs
    assert tiny.runs == 2 and tiny.figures == ["training_curves"]
    assert tiny.flops == pytest.approx(sum(cost.sgd_run_cost(r).flops for r in config["runs"]["tiny"].values()))
    text = cost.table(costs)
    assert text.count("\n") == 3 and "| tiny | training_curves |" in text and "**total**" in text
    assert tiny.gpu_hours("fp32") > tiny.gpu_hours("tf32") > 0


def test_cpu_peak_is_positive_or_unknown():
    peak, note = cost.cpu_peak(1)
    assert peak is None or peak > 1e8
    assert note
    torch.set_num_threads(torch.get_num_threads())  # the module may set it: leave it as found


def test_noise_measurement_images(tmp_path):
    # every epoch (steps 0, 1 and 2 epochs), 2 minibatches of B = 50
    (run,) = runs_of(tmp_path, gradient_noise={"every": 1, "unit": "epoch", "batches": 2})
    assert cost.sgd_run_cost(run).noise_images == 3 * 2 * 50
    assert cost.noise_images({"batches": None}, 128) == 200 * 128  # the paper's max(200, 12800/B)
    assert cost.noise_images({"batches": None}, 16) == 800 * 16
    assert cost.noise_images({"estimator": "per_example", "samples": 300}, 128) == 300
