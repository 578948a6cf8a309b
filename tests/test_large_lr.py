"""Large-LR implicit biases (docs/science.md section 6): sharpness, full-batch GD runs, the
catapult and balancing toys, the EoS analysis and the GD config."""

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import resolve, tiny_config
from lrdynamics.config import ConfigError
from lrdynamics.engine.checkpoint import Interrupted
from lrdynamics.engine.data import gd_example_indices, load_prepared, pixel_statistics, stratified_subset
from lrdynamics.engine.gd import GradientDescent, gd_loss, huber_loss, mse_loss
from lrdynamics.engine.hessian import exact_hessian, sharpness
from lrdynamics.engine.job import train
from lrdynamics.engine.models import fc_net, set_layer_norms, weight_layers
from lrdynamics.engine.runfile import check_contract, gd_run_dataset, open_runs
from lrdynamics.figures.common import FigureInputs
from lrdynamics.figures.large_lr import plot_edge_of_stability
from lrdynamics.studies.large_lr.balancing import balancing_dataset, balancing_gd
from lrdynamics.studies.large_lr.catapult import catapult_dataset, catapult_gd, catapult_summary
from lrdynamics.studies.large_lr.eos import OUTCOMES, eos_analysis, run_summary

EOS = {"band": 0.15, "late_fraction": 0.25}  # the EoS analysis settings (the schema's defaults)
SCALAR = (1, 1, 1)  # the scalar balancing problem

# --- sharpness ---------------------------------------------------------------------------


def tiny_problem(norm="none", activation="tanh", n=40, seed=0):
    torch.manual_seed(seed)
    model = fc_net(6, 3, width=5, depth=2, activation=activation, norm=norm, bias=True).double()
    x = torch.randn(n, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (n,))
    return model, x, y


@pytest.mark.parametrize(
    "norm, loss",
    [("none", "mse"), ("bn", "mse"), ("none", "huber"), ("bn", "cross_entropy"), ("none", "cross_entropy")],
)
def test_lanczos_sharpness_equals_the_exact_hessian_top_eigenvalues(norm, loss):
    model, x, y = tiny_problem(norm)
    # Huber with a small delta, so that residuals on both sides of it occur
    loss_fn = gd_loss(loss, huber_delta=0.3)
    model.train()
    exact = np.linalg.eigvalsh(exact_hessian(model, loss_fn, x, y))[::-1]
    values, vectors, products = sharpness(model, loss_fn, x, y, k=2, tol=1e-10)
    np.testing.assert_allclose(values, exact[:2], rtol=1e-8)
    assert products > 2 and vectors.shape == (sum(p.numel() for p in model.parameters()), 2)


def test_sharpness_leaves_batch_norm_running_statistics_untouched():
    model, x, y = tiny_problem("bn")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sharpness(model, mse_loss, x, y, k=1)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. running mean/var and counts
    assert model.training


def test_exact_hessian_of_a_linear_model_under_mse_is_the_input_covariance():
    """Independent of both code paths: for f = W x, 0.5 sum (f - onehot)^2 averaged over
    examples has Hessian I_classes (x) X^T X / n, so the sharpness is the top eigenvalue of X^T X / n."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False)).double()
    x, y = torch.randn(50, 4, dtype=torch.float64), torch.randint(0, 3, (50,))
    covariance = (x.T @ x / 50).numpy()
    top = np.linalg.eigvalsh(covariance)[-1]
    values, _, _ = sharpness(model, mse_loss, x, y, k=1, tol=1e-12)
    assert values[0] == pytest.approx(top, rel=1e-10)
    np.testing.assert_allclose(exact_hessian(model, mse_loss, x, y), np.kron(np.eye(3), covariance), atol=1e-12)


def test_warm_start_gives_the_same_eigenvalue_with_fewer_products():
    model, x, y = tiny_problem(n=60)
    # a larger net than the dense fallback covers
    cold, vectors, cold_products = sharpness(model, mse_loss, x, y, k=1, tol=1e-8)
    warm, _, warm_products = sharpness(model, mse_loss, x, y, k=1, v0=vectors[:, 0], tol=1e-8)
    assert warm[0] == pytest.approx(cold[0], rel=1e-8)
    assert warm_products < cold_products


def diagonal_quadratic(diagonal):
    """A linear model w . x on the unit vectors with loss 0.5 * mean_i d_i (w . e_i)^2: the
    Hessian is diag(d) / n, whatever the weights (n = len(d))."""
    n = len(diagonal)
    model = torch.nn.Sequential(torch.nn.Linear(n, 1, bias=False)).double()
    d = torch.tensor(diagonal, dtype=torch.float64)
    return model, lambda out, y: 0.5 * (d * out[:, 0] ** 2).mean(), torch.eye(n, dtype=torch.float64), d


@pytest.mark.parametrize("diagonal", [[-8.0, 3.0, 1.0, 0.5, 0.2, 0.1, -0.3, 0.05, 0.02, 0.01, 2.5, 0.7], [-8.0, 3.0]])
def test_sharpness_which_la_is_the_top_eigenvalue_and_lm_the_largest_magnitude(diagonal):
    """With a negative eigenvalue of the largest magnitude, LM (eigsh's default, Cohen et
    al.'s call) returns it; LA returns the top eigenvalue (ARPACK, and the dense path for
    dim <= k)."""
    model, loss_fn, x, y = diagonal_quadratic(diagonal)
    values = np.sort(np.array(diagonal) / len(diagonal))[::-1]
    k = 2
    la, _, _ = sharpness(model, loss_fn, x, y, k=k, tol=1e-12)
    lm, vectors, _ = sharpness(model, loss_fn, x, y, k=k, tol=1e-12, which="LM")
    np.testing.assert_allclose(la, values[:k], rtol=1e-9)
    by_magnitude = values[np.argsort(-np.abs(values))[:k]]
    np.testing.assert_allclose(lm, np.sort(by_magnitude)[::-1], rtol=1e-9)  # descending order
    assert lm.min() == pytest.approx(-8.0 / len(diagonal)) and abs(vectors[0, 1]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="allowed: LA, LM"):
        sharpness(model, loss_fn, x, y, which="SA")


def test_losses_follow_their_definitions():
    out, y = torch.randn(7, 4, dtype=torch.float64), torch.randint(0, 4, (7,))
    target = F.one_hot(y, 4).double()
    assert float(mse_loss(out, y)) == pytest.approx(float(0.5 * ((out - target) ** 2).sum() / 7))
    # torch's huber_loss summed over outputs, averaged over examples
    for delta in (0.5, 1.0):
        ref = F.huber_loss(out, target, reduction="sum", delta=delta) / 7
        assert float(huber_loss(out, y, delta)) == pytest.approx(float(ref))
    with pytest.raises(ValueError, match="allowed: mse, huber, cross_entropy"):
        gd_loss("l1", 1.0)


def test_fc_net_layout_and_initial_layer_norms():
    model = fc_net(784, 10, width=200, depth=1, activation="cubic_relu", norm="bn", bias=False)
    set_layer_norms(model, [1.0, 10.0])
    norms = [float(p.detach().norm()) for p in weight_layers(model).values()]
    assert norms == pytest.approx([1.0, 10.0])
    assert [type(m).__name__ for m in model] == ["Flatten", "Linear", "BatchNorm1d", "CubicReLU", "Linear"]
    assert not model[2].affine and model[1].bias is None
    x = torch.tensor([[-1.0, 2.0]])
    assert torch.equal(model[3](x), torch.tensor([[0.0, 8.0]]))
    with pytest.raises(ValueError, match="2 weight layers"):
        set_layer_norms(model, [1.0])


# --- full-batch GD runs --------------------------------------------------------------------


def gd_config(data_dir, **gd):
    config = tiny_config(data_dir)
    spec = {"dataset": "synth", "examples": 100, "model": {"width": 16}, "steps": 40, "sharpness_every": 10}
    config["gd_experiments"] = {"g": {**spec, **gd}}
    return config


def gd_run(data_dir, **gd) -> dict:
    return next(iter(resolve(gd_config(data_dir, **gd))["runs"]["g"].values()))


def test_gd_run_takes_lr_as_a_multiple_of_two_over_the_initial_sharpness(synth_data_dir):
    run = gd_run(synth_data_dir, lr_multiple=0.5, dtype="float64")
    gd = GradientDescent(run, threads=1)
    status = gd.fit()
    assert status["status"] == "completed"
    assert status["lr"] == pytest.approx(0.5 * 2 / status["initial_sharpness"], rel=1e-12)
    assert gd.sharp["sharpness_step"] == [0, 10, 20, 30, 40]
    assert gd.records["step"] == list(range(41))
    ds = gd.dataset(status)
    assert check_contract(ds) == []
    assert float(ds.sharpness.isel(sharpness_step=0, eigenvalue=0)) == status["initial_sharpness"]


def test_a_gd_step_is_plain_gradient_descent_on_the_full_batch(synth_data_dir):
    run = gd_run(synth_data_dir, lr=0.05, steps=1, dtype="float64", loss="huber")
    gd = GradientDescent(run, threads=1)
    w0 = [p.detach().clone() for p in gd.params]
    loss = gd.loss_fn(gd.model(gd.x), gd.y)
    grads = torch.autograd.grad(loss, gd.params)
    gd.fit()
    for p, w, g in zip(gd.params, w0, grads):
        torch.testing.assert_close(p.detach(), w - 0.05 * g, rtol=0, atol=1e-15)
    assert gd.records["train_loss"][0] == pytest.approx(float(loss.detach()))


def prepared_train(data_dir) -> tuple[np.ndarray, np.ndarray]:
    record = load_prepared(data_dir / "synth" / "train.pt")
    return record["images"].numpy().reshape(len(record["labels"]), -1).astype(np.float64), record["labels"].numpy()


def test_gd_subset_defaults_are_the_stratified_draw_standardized_over_itself(synth_data_dir):
    """Today's behaviour: a stratified subset (subset_seed) standardized per pixel with its
    own mean and unbiased std (numpy, ddof 1)."""
    run = gd_run(synth_data_dir, lr=0.1, subset_seed=3)
    assert (run["examples_from"], run["standardize_with"], run["stop_train_accuracy"], run["sharpness_which"]) == (
        "stratified", "subset", None, "LA",
    )  # fmt: skip
    images, labels = prepared_train(synth_data_dir)
    idx = stratified_subset(labels, 100, 3)
    sub = images[idx]
    std = sub.std(0, ddof=1)
    expected = (sub - sub.mean(0)) / np.where(std > 0, std, 1.0)
    gd = GradientDescent({**run, "dtype": "float64"}, threads=1)
    np.testing.assert_allclose(gd.x.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(gd.y.numpy(), labels[idx])


def test_gd_subset_first_takes_the_first_images_and_train_uses_the_whole_training_set(synth_data_dir):
    """Cohen et al.: the first N training images (take_first), centred and divided by the
    per-pixel mean and population std of the whole training set (src/cifar.py)."""
    run = gd_run(synth_data_dir, lr=0.1, examples_from="first", standardize_with="train", dtype="float64")
    images, labels = prepared_train(synth_data_dir)
    assert len(labels) == 600
    gd = GradientDescent(run, threads=1)
    expected = (images[:100] - images.mean(0)) / images.std(0)  # numpy: ddof 0
    np.testing.assert_allclose(gd.x.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(gd.y.numpy(), labels[:100])
    # first, standardized over the subset: the same images, other statistics
    own = GradientDescent({**run, "standardize_with": "subset"}, threads=1).x.numpy()
    sub = images[:100]
    np.testing.assert_allclose(own, (sub - sub.mean(0)) / sub.std(0, ddof=1), rtol=1e-12, atol=1e-12)
    # the seed does not matter for "first"
    np.testing.assert_array_equal(gd_example_indices(labels, 7, "first", 0), gd_example_indices(labels, 7, "first", 5))
    assert list(gd_example_indices(labels, 7, "first", 0)) == list(range(7))


def test_pixel_statistics_are_numpys_per_pixel_mean_and_population_std():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(1037, 3, 4, 5), dtype=np.uint8)
    images[:, 1, 2, 3] = 17  # a constant pixel: std 0
    mean, std = pixel_statistics(torch.from_numpy(images), chunk=100)
    flat = images.reshape(len(images), -1).astype(np.float64)
    np.testing.assert_allclose(mean.numpy(), flat.mean(0), rtol=1e-14)
    np.testing.assert_allclose(std.numpy(), flat.std(0), rtol=1e-12)
    assert std.numpy().reshape(3, 4, 5)[1, 2, 3] == 0.0 and mean.shape == (60,)


def test_gd_config_takes_only_the_documented_subset_and_stop_values(synth_data_dir):
    with pytest.raises(ConfigError, match=r"examples_from: 'last' is not allowed"):
        gd_run(synth_data_dir, lr=0.1, examples_from="last")
    with pytest.raises(ConfigError, match=r"standardize_with"):
        gd_run(synth_data_dir, lr=0.1, standardize_with="test")
    with pytest.raises(ConfigError, match=r"stop_train_accuracy"):
        gd_run(synth_data_dir, lr=0.1, stop_train_accuracy=1.5)
    with pytest.raises(ConfigError, match=r"sharpness_which"):
        gd_run(synth_data_dir, lr=0.1, sharpness_which="SA")
    assert gd_run(synth_data_dir, lr=0.1, stop_train_accuracy=1)["stop_train_accuracy"] == 1


def test_a_gd_run_stops_at_the_first_step_that_reaches_the_train_accuracy_goal(synth_data_dir, tmp_path):
    """Cohen et al.'s --acc_goal: checked at every step before its update. The file of the
    stopped run is valid, ends at that step (sharpness measured there too), agrees with
    the whole run up to it, and the EoS analysis and figure read it beside a whole run."""
    config = gd_config(synth_data_dir, lr_multiple=0.5, dtype="float64")
    config["gd_experiments"]["h"] = {**config["gd_experiments"]["g"], "stop_train_accuracy": 0.99}
    runs = resolve(config)["runs"]
    (whole_run,), (stop_run,) = runs["g"].values(), runs["h"].values()
    whole = train(whole_run, tmp_path / "whole.nc", threads=1)
    accuracy = whole["train_accuracy"].values
    first = int(np.flatnonzero(accuracy >= 0.99)[0])
    assert 10 < first < 40 and first % 10 != 0  # mid-run, between two scheduled measurements
    stopped = train(stop_run, tmp_path / "stopped.nc", threads=1)
    (ds,) = open_runs([tmp_path / "stopped.nc"])
    assert check_contract(ds) == []
    assert ds.attrs["status"] == "completed" and ds.attrs["stopped_step"] == first and ds.attrs["diverged_step"] == -1
    assert whole.attrs["stopped_step"] == -1
    assert list(ds.step.values) == list(range(first + 1)) and ds.sizes["step"] < whole.sizes["step"]
    assert list(ds.sharpness_step.values) == [0, 10, first]
    assert (accuracy[:first] < 0.99).all() and ds["train_accuracy"].values[-1] >= 0.99
    for name in ("train_loss", "train_accuracy", "layer_norm"):
        np.testing.assert_array_equal(ds[name].values, whole[name].isel(step=slice(0, first + 1)).values)
    np.testing.assert_array_equal(ds.sharpness.values[:2], whole.sharpness.values[:2])
    assert stopped.attrs["stopped_step"] == first
    eos = eos_analysis(open_runs([tmp_path / "whole.nc", tmp_path / "stopped.nc"]), **EOS)
    assert eos.sizes["step"] == 41 and np.isnan(float(eos.train_loss.sel(run="h/run", step=first + 1)))
    assert np.isfinite(eos.late_sharpness_ratio.values).all()
    plot_edge_of_stability(FigureInputs(titles={"h": ""}, analyses={"eos": eos}), tmp_path / "eos.png")
    assert (tmp_path / "eos.png").stat().st_size > 0


def test_a_gd_run_whose_initial_accuracy_meets_the_goal_stops_at_step_zero(synth_data_dir):
    run = gd_run(synth_data_dir, lr=0.1, stop_train_accuracy=1e-6)
    gd = GradientDescent(run, threads=1)
    status = gd.fit()
    assert status["stopped_step"] == 0 and gd.records["step"] == [0] and gd.sharp["sharpness_step"] == [0]
    assert check_contract(gd.dataset(status)) == []


def test_divergence_is_recorded_not_fatal(synth_data_dir, tmp_path):
    run = gd_run(synth_data_dir, lr=1.0e5)
    out = tmp_path / "g.nc"
    train(run, out, threads=1)
    (ds,) = open_runs([out])
    assert ds.attrs["status"] == "diverged" and 0 < ds.attrs["diverged_step"] < 40
    summary = run_summary(ds, **EOS)
    assert summary["outcome"] == OUTCOMES.index("diverged") and np.isnan(summary["late_sharpness_ratio"])


class StopAt:
    """A Checkpointing stand-in: saves the state at one step and stops (as on SIGTERM)."""

    def __init__(self, step):
        self.step, self.state = step, None

    def due(self, done):
        return done == self.step

    def save(self, state):
        self.state = copy.deepcopy(state)
        raise Interrupted(15)


def test_an_interrupted_gd_run_resumes_to_the_same_numbers(synth_data_dir):
    run = gd_run(synth_data_dir, lr_multiple=1.5, model={"width": 16, "norm": "bn"})
    whole = GradientDescent(run, threads=1)
    whole.fit()
    first = GradientDescent(run, threads=1)
    stop = StopAt(17)
    with pytest.raises(Interrupted):
        first.fit(checkpoint=stop)
    resumed = GradientDescent(run, threads=1)
    resumed.fit(state=stop.state)
    assert resumed.records["train_loss"] == whole.records["train_loss"]
    np.testing.assert_array_equal(np.array(resumed.sharp["sharpness"]), np.array(whole.sharp["sharpness"]))


def test_the_command_line_trains_a_gd_run_from_its_file_config(synth_data_dir, tmp_path):
    """python -m lrdynamics.train takes the config_json of a GD run file as of an SGD one,
    and gives the same file (the one job driver picks the GD engine from the run)."""
    run = gd_run(synth_data_dir, lr_multiple=0.5, steps=12, sharpness_every=4)
    direct = train(run, tmp_path / "direct.nc", threads=1)
    path = tmp_path / "gd.json"
    path.write_text(direct.attrs["config_json"])
    cmd = [sys.executable, "-m", "lrdynamics.train", str(path), str(tmp_path / "cli.nc"), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (cli,) = open_runs([tmp_path / "cli.nc"])
    assert cli.attrs["kind"] == "full_batch_gd" and cli.attrs["status"] == "completed"
    for name in ("train_loss", "sharpness", "layer_norm"):
        np.testing.assert_array_equal(cli[name].values, direct[name].values)


def test_gd_config_errors_name_the_key(synth_data_dir):
    with pytest.raises(ConfigError, match=r"gd_experiments.g: set exactly one of lr and lr_multiple"):
        gd_run(synth_data_dir)
    with pytest.raises(ConfigError, match=r"gd_experiments.g: set exactly one of lr and lr_multiple"):
        gd_run(synth_data_dir, lr=0.1, lr_multiple=1.0)
    with pytest.raises(ConfigError, match=r"model.layer_norms: 1 values for 3 weight layers"):
        gd_run(synth_data_dir, lr=0.1, model={"layer_norms": [1.0]})
    with pytest.raises(ConfigError, match=r"examples: 100000 is more than the 60000"):
        gd_run(synth_data_dir, lr=0.1, examples=100000)
    with pytest.raises(ConfigError, match=r"model.activation: 'sigmoid' is not allowed"):
        gd_run(synth_data_dir, lr=0.1, model={"activation": "sigmoid"})
    config = gd_config(synth_data_dir, lr=0.1)
    config["gd_experiments"]["tiny"] = config["gd_experiments"]["g"]
    with pytest.raises(ConfigError, match="tiny also named in experiments"):
        resolve(config)
    config = gd_config(synth_data_dir, lr=0.1)
    config["figures"]["edge_of_stability"] = {"experiment": "tiny"}
    with pytest.raises(ConfigError, match=r"figures.edge_of_stability.experiment: 'tiny' is not in gd_experiments"):
        resolve(config)


def test_gd_grid_resolves_into_named_runs(synth_data_dir):
    config = gd_config(
        synth_data_dir,
        model={"depth": 1, "layer_norms": [1.0, 10.0]},
        grid={"loss": ["mse", "huber"], "lr_multiple": [2.0, 4.0]},
    )
    runs = resolve(config)["runs"]["g"]
    assert sorted(runs) == sorted(f"loss={lo}_lr_multiple={c}" for lo in ("mse", "huber") for c in (2.0, 4.0))
    run = runs["loss=huber_lr_multiple=4.0"]
    assert run["kind"] == "full_batch_gd" and run["loss"] == "huber" and run["lr_multiple"] == 4.0
    assert run["model"] == {"activation": "tanh", "width": 200, "depth": 1, "bias": True, "norm": "none",
                            "layer_norms": [1.0, 10.0]}  # fmt: skip


# --- toys ------------------------------------------------------------------------------------


def test_catapult_square_loss_follows_the_exact_gd_map():
    """docs/science.md section 6: f' = f (1 - eta lam + eta^2 f^2 / n), lam' = lam + (eta f^2 / n)(eta lam - 4)."""
    n = 50
    run = catapult_gd([2.5], "square", width=n, steps=5, seed=0, huber_delta=1.0)
    f, eta_lam = run["f"][0], run["eta_lambda"][0]
    eta = run["lr"][0]
    lam = eta_lam / eta
    for t in range(5):
        assert f[t + 1] == pytest.approx(f[t] * (1 - eta * lam[t] + eta**2 * f[t] ** 2 / n), rel=1e-10)
        assert lam[t + 1] == pytest.approx(lam[t] + eta * f[t] ** 2 / n * (eta * lam[t] - 4), rel=1e-10)


def test_catapult_window_spikes_and_converges_between_two_and_four_and_diverges_above():
    c = [1.0, 1.8, 2.2, 2.6, 3.0, 3.4, 3.8, 4.2, 5.0]
    summary = catapult_summary(catapult_gd(c, "square", width=1000, steps=300, seed=0, huber_delta=1.0))
    inside = (np.array(c) > 2) & (np.array(c) < 4)
    assert (summary["outcome"][inside] == 1).all()  # catapult: spike, then converged
    assert (summary["spike_height"][inside] > 5).all()  # 6x at c = 2.2 up to 240x at 3.8
    assert (summary["final_eta_lambda"][inside] < 2).all()  # landed where GD is stable
    assert (summary["outcome"][np.array(c) < 2] == 0).all()
    assert (summary["outcome"][np.array(c) > 4] == 2).all()


def test_balancing_step_multiplies_the_imbalance_by_the_gd_factor():
    """x^2 - y^2 after one step = (x^2 - y^2)(1 - h^2 l'(xy - 1)^2), for each loss."""
    for loss, grad in (("square", lambda r: r), ("quartic", lambda r: r**3), ("huber", lambda r: np.clip(r, -1, 1))):
        run = balancing_gd([0.5], loss, SCALAR, x_norm=1.3, y_norm=0.4, steps=1, seed=0, huber_delta=1.0)
        h = run["lr"][0]
        x, y = 1.3, 0.4
        factor = 1 - h**2 * grad(x * y - 1) ** 2
        x1 = x - h * grad(x * y - 1) * y
        y1 = y - h * grad(x * y - 1) * x
        assert x1**2 - y1**2 == pytest.approx((x**2 - y**2) * factor, rel=1e-12)
        assert run["balance"][0, 1] == pytest.approx(abs(x1) - abs(y1), rel=1e-12)


def test_balancing_needs_a_large_step_and_the_quartic_loss_never_balances():
    run = balancing_gd([1.0, 3.0, 4.5], "square", SCALAR, 4.0, 0.1, steps=2000, seed=0, huber_delta=1.0)
    final = run["balance"][:, -1]
    assert final[0] > 3.5  # small step: the imbalance of the start stays
    assert abs(final[1]) < 0.5  # c = 3: balanced
    assert run["diverged_step"][2] >= 0
    quartic = balancing_gd([1.0, 3.0, 4.5], "quartic", SCALAR, 4.0, 0.1, steps=2000, seed=0, huber_delta=1.0)
    assert (quartic["balance"][:, -1] > 3.5).all() and (quartic["diverged_step"] < 0).all()
    # the sharpness of the scalar problem at init is about x0^2 = 16 (square loss)
    assert run["sharpness"][0, 0] == pytest.approx(16.0, rel=0.02)


def test_toy_datasets_have_the_contract_attributes():
    cat = catapult_dataset(eta_lambda0=[1.0, 3.0], losses=["square", "huber"], width=100, steps=20, seed=0,
                           huber_delta=1.0)  # fmt: skip
    assert dict(cat.sizes) == {"loss_function": 2, "eta_lambda0": 2, "t": 21}
    bal = balancing_dataset(c=[1.0, 3.0], losses=["square"], x_norm=4.0, y_norm=0.1, matrix_shape=[3, 3, 2],
                            steps=20, seed=0, huber_delta=1.0)  # fmt: skip
    assert dict(bal.sizes) == {"loss_function": 1, "problem": 2, "c": 2, "step": 21}
    for ds in (cat, bal):
        assert all({"long_name", "units"} <= set(v.attrs) for v in ds.data_vars.values())


# --- analysis ----------------------------------------------------------------------------------


def synthetic_gd_run(sharp, loss, lr, status="completed", diverged_step=-1, name="r"):
    run = {
        "experiment": "e", "run": name, "dataset": "d", "examples": 10, "loss": "mse", "lr_multiple": 1.0, "seed": 0,
        "sharpness_eigenvalues": 1, "hyperparameters": {}, "model": {"activation": "tanh", "norm": "none"},
    }  # fmt: skip
    records = {
        "step": list(range(len(loss))),
        "train_loss": list(loss),
        "train_accuracy": [0.5] * len(loss),
        "layer_norm": [[1.0 + t, 10.0] for t in range(len(loss))],
    }
    sharp_records = {
        "sharpness_step": list(range(len(sharp))),
        "sharpness": [[s] for s in sharp],
        "hessian_products": [9] * len(sharp),
    }
    attrs = {"status": status, "diverged_step": diverged_step, "lr": lr, "initial_sharpness": sharp[0]}
    return gd_run_dataset(records, sharp_records, ["0.weight", "1.weight"], run, attrs)


def test_eos_summary_measures_the_late_ratio_spike_and_balance():
    # 2/lr = 20: sharpening from 10 to 20, then hovering at 21-22 (late median 21.5)
    sharp = [10, 14, 18, 20, 22, 21, 22, 21]
    ds = synthetic_gd_run(sharp, [1.0, 0.9, 3.0, 0.5, 0.4], lr=0.1)
    s = run_summary(ds, band=0.15, late_fraction=0.25)
    assert s["late_sharpness_ratio"] == pytest.approx(21.5 / 20)
    assert s["reached_eos"] == 1 and s["at_eos"] == 1
    assert s["spike_height"] == pytest.approx(3.0)
    assert s["outcome"] == OUTCOMES.index("catapult_then_eos")
    assert s["initial_balance"] == 81.0 and s["final_balance"] == pytest.approx((5.0 - 10.0) ** 2)
    below = run_summary(synthetic_gd_run([10, 11, 12, 12], [1.0, 0.5], lr=0.1), **EOS)
    assert below["reached_eos"] == 0 and below["outcome"] == OUTCOMES.index("stable")


def test_eos_analysis_stacks_runs_of_different_lengths():
    a = synthetic_gd_run([10, 20, 21], [1.0, 0.5, 0.4], lr=0.1, name="a")
    b = synthetic_gd_run([10, 30], [1.0, 1e9], lr=1.0, status="diverged", diverged_step=1, name="b")
    eos = eos_analysis([a, b], **EOS)
    assert eos.sizes["run"] == 2 and eos.sizes["step"] == 3
    assert np.isnan(float(eos.train_loss.sel(run="e/b", step=2)))
    assert list(eos.outcome.values) == [OUTCOMES.index("eos"), OUTCOMES.index("diverged")]
