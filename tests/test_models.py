"""Models: architectures are what their names say; scale invariance holds numerically."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrdynamics.config import load_schema, schema_defaults
from lrdynamics.engine.models import build_model, scale_invariance_error, weight_layers

DEFAULTS = schema_defaults(load_schema()["$defs"]["run"]["properties"]["model"])


def spec(name, **kw):
    return {**DEFAULTS, "name": name, **kw}


def batch(shape, n=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g)


def model_of(name, shape, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return build_model(spec(name, **kw), shape, 10).to(dtype)


SCALE_INVARIANT = [
    ("mlp", (1, 28, 28), {"width": 64}),
    ("mlp", (1, 28, 28), {"width": 64, "norm": "gn", "groups": 8}),
    ("mlp", (1, 28, 28), {"width": 64, "norm": "ln"}),
    ("cnn4", (1, 28, 28), {"width": 8}),
    ("cnn4", (1, 28, 28), {"width": 8, "norm": "gn", "groups": 4}),
    ("preresnet32", (3, 16, 16), {}),
    ("preresnet32", (3, 16, 16), {"norm": "gn", "groups": 8}),
    ("resnet56", (3, 16, 16), {"width_multiplier": 0.5}),
    ("vgg16", (3, 32, 32), {}),
    ("vgg19", (3, 32, 32), {"width_multiplier": 0.25}),
    ("vgg19", (3, 32, 32), {"width_multiplier": 0.25, "norm": "gn", "groups": 4}),
]


@pytest.mark.parametrize(
    "name,shape,kw", SCALE_INVARIANT, ids=[f"{n}-{k.get('norm', 'bn')}" for n, _, k in SCALE_INVARIANT]
)
def test_normalized_models_are_scale_invariant(name, shape, kw):
    model = model_of(name, shape, **kw)
    assert model.scale_invariant
    x, y = batch(shape)
    for c in (0.1, 3.0, 1e3):
        assert scale_invariance_error(model, F.cross_entropy, x, y, c) < 1e-10, c


@pytest.mark.parametrize(
    "name,shape", [("mlp", (1, 28, 28)), ("vgg16", (3, 32, 32)), ("vgg19", (3, 32, 32)), ("cnn4", (1, 28, 28))]
)
def test_unnormalized_models_are_not_scale_invariant(name, shape):
    model = model_of(name, shape, norm="none", width=16)
    assert not model.scale_invariant
    x, y = batch(shape)
    assert scale_invariance_error(model, F.cross_entropy, x, y, 3.0) > 1e-3


def test_trainable_last_layer_breaks_scale_invariance():
    model = model_of("mlp", (1, 28, 28), width=32, freeze_last_layer=False)
    assert not model.scale_invariant
    x, y = batch((1, 28, 28))
    assert scale_invariance_error(model, F.cross_entropy, x, y, 3.0) > 1e-3


def test_scale_invariance_check_leaves_model_unchanged():
    model = model_of("cnn4", (1, 28, 28), width=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = batch((1, 28, 28))
    scale_invariance_error(model, F.cross_entropy, x, y, 5.0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def _count(model, kind, kernel=None):
    return sum(1 for m in model.modules() if isinstance(m, kind) and (kernel is None or m.kernel_size == kernel))


def test_vgg16_is_really_vgg16():
    model = model_of("vgg16", (3, 32, 32), dtype=torch.float32)
    assert _count(model, nn.Conv2d, (3, 3)) == 13  # configuration D; VGG19 has 16
    assert _count(model, nn.MaxPool2d) == 5
    assert _count(model, nn.Linear) == 1
    assert _count(model, nn.BatchNorm2d) == 13
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_preresnet32_layout_and_width_multiplier():
    model = model_of("preresnet32", (3, 32, 32), dtype=torch.float32)
    # depth 32 = first conv + 15 blocks x 2 convs + the classifier
    assert _count(model, nn.Conv2d, (3, 3)) == 31
    assert _count(model, nn.Conv2d, (1, 1)) == 3  # shortcut of each stage's first block
    assert _count(model, nn.Linear) == 1
    assert all(not m.affine for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert not model.classifier.weight.requires_grad
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    wide = model_of("preresnet32", (3, 32, 32), dtype=torch.float32, width_multiplier=4)
    assert wide.classifier.in_features == 256
    n_params = sum(p.numel() for p in weight_layers(model).values())
    assert 0.4e6 < n_params < 0.5e6  # PreResNet32 has ~0.46M weights


def test_resnet56_layout():
    model = model_of("resnet56", (3, 32, 32), dtype=torch.float32)
    # depth 56 = first conv + 27 blocks x 2 convs + the classifier; option-A shortcuts have no conv
    assert _count(model, nn.Conv2d, (3, 3)) == 55
    assert _count(model, nn.Conv2d, (1, 1)) == 0
    assert _count(model, nn.BatchNorm2d) == 55
    assert _count(model, nn.Linear) == 1 and not model.classifier.weight.requires_grad
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0] == 16 and convs[19:21] == [32, 32] and convs[-1] == 64
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    n_params = sum(p.numel() for p in weight_layers(model).values())
    assert 0.84e6 < n_params < 0.86e6  # ResNet-56 has ~0.85M parameters


def test_weight_layers_are_the_trainable_weight_tensors():
    model = model_of("mlp", (1, 28, 28), width=32, depth=3)
    layers = weight_layers(model)
    assert list(layers) == ["features.1.weight", "features.4.weight", "features.7.weight"]
    assert "classifier.weight" not in layers  # frozen


def test_paper_mnist_model_is_the_4_layer_normalized_cnn():
    """config/paper.yaml's MNIST histories: cnn4 with BN at its default width on 1x28x28."""
    from conftest import REPO
    from lrdynamics.config import load_config_file

    (run,) = load_config_file(REPO / "config" / "paper.yaml")["runs"]["eq_hist_a"].values()
    torch.manual_seed(0)
    model = build_model(run["model"], (1, 28, 28), 10).to(torch.float64)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.stride, m.bias) for m in convs] == [
        (1, 32, (1, 1), None),
        (32, 64, (2, 2), None),
        (64, 128, (2, 2), None),
    ]
    assert _count(model, nn.BatchNorm2d) == 3 and all(
        not m.affine for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    )
    assert _count(model, nn.Linear) == 1 and not model.classifier.weight.requires_grad  # the 4th layer, frozen
    assert len(weight_layers(model)) == 3
    x, y = batch((1, 28, 28))
    assert model(x).shape == (16, 10)
    assert model.scale_invariant and scale_invariance_error(model, F.cross_entropy, x, y, 7.0) < 1e-10


def test_vgg19_is_really_vgg19():
    """Configuration E with vgg16's conventions: a norm and ReLU after each conv, the single
    linear classifier; 16 convs, ~20.0M conv weights at width 1 (VGG19-BN for CIFAR)."""
    model = model_of("vgg19", (3, 32, 32), dtype=torch.float32)
    assert _count(model, nn.Conv2d, (3, 3)) == 16 and _count(model, nn.Conv2d) == 16
    assert _count(model, nn.MaxPool2d) == 5
    assert _count(model, nn.Linear) == 1 and not model.classifier.weight.requires_grad
    assert _count(model, nn.BatchNorm2d) == 16 and _count(model, nn.ReLU) == 16
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [64, 64, 128, 128, 256, 256, 256, 256] + [512] * 8
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    n_params = sum(p.numel() for p in weight_layers(model).values())
    assert 20.0e6 < n_params < 20.1e6


@pytest.mark.parametrize("norm,kind", [("bn", nn.BatchNorm2d), ("gn", nn.GroupNorm), ("none", None)])
def test_vgg19_builds_with_each_norm(norm, kind):
    model = model_of("vgg19", (3, 32, 32), dtype=torch.float32, width_multiplier=0.125, norm=norm, groups=4)
    assert _count(model, nn.Conv2d, (3, 3)) == 16
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [8, 8, 16, 16, 32, 32, 32, 32] + [64] * 8
    if kind is None:
        assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in model.modules())
        assert all(m.bias is not None for m in convs) and model.classifier.bias is not None
    else:
        assert _count(model, kind) == 16
        if kind is nn.GroupNorm:
            assert all(m.num_groups == 4 for m in model.modules() if isinstance(m, nn.GroupNorm))
    assert model.scale_invariant == (norm != "none")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vgg19_needs_32_pixel_images():
    from conftest import resolve, tiny_config
    from lrdynamics.config import ConfigError

    config = tiny_config("/tmp")
    config["run_defaults"]["model"] = {"name": "vgg19", "width_multiplier": 0.125}
    with pytest.raises(ConfigError, match="resize: 32"):
        resolve(config)


NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
ALL_NETS = [
    ("mlp", (1, 28, 28), {"width": 32}),
    ("mlp", (1, 28, 28), {"width": 32, "norm": "ln"}),
    ("cnn4", (1, 28, 28), {"width": 8, "norm": "gn", "groups": 4}),
    ("preresnet32", (3, 8, 8), {"width_multiplier": 0.25}),
    ("resnet56", (3, 8, 8), {"width_multiplier": 0.25}),
    ("vgg16", (3, 32, 32), {"width_multiplier": 0.25}),
    ("vgg19", (3, 32, 32), {"width_multiplier": 0.25, "norm": "gn", "groups": 4}),
]
NET_IDS = [f"{n}-{k.get('norm', 'bn')}" for n, _, k in ALL_NETS]


def _without_new_keys(name, **kw):
    return {k: v for k, v in spec(name, **kw).items() if k not in ("affine", "last_layer_init")}


@pytest.mark.parametrize("name,shape,kw", ALL_NETS, ids=NET_IDS)
def test_affine_false_is_the_net_of_before(name, shape, kw):
    """The defaults (affine: false, last_layer_init: pytorch) build the net a spec without
    these keys builds: same parameters, values and buffers, same random draws consumed,
    no affine parameters, only weight layers to train."""
    assert DEFAULTS["affine"] is False and DEFAULTS["last_layer_init"] == "pytorch"
    torch.manual_seed(0)
    old = build_model(_without_new_keys(name, **kw), shape, 10)
    after_old = torch.rand(3)
    new = model_of(name, shape, dtype=torch.float32, affine=False, last_layer_init="pytorch", **kw)
    assert torch.equal(torch.rand(3), after_old)
    assert list(new.state_dict()) == list(old.state_dict())
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in new.state_dict().items())
    norms = [m for m in new.modules() if isinstance(m, NORM_LAYERS)]
    assert norms and all(not getattr(m, "affine", getattr(m, "elementwise_affine", None)) for m in norms)
    trainable = [n for n, p in new.named_parameters() if p.requires_grad]
    assert trainable == list(weight_layers(new)) and new.scale_invariant and not new.affine
    assert "classifier.bias" not in dict(new.named_parameters())


def test_affine_false_parameter_names_of_cnn4():
    model = model_of("cnn4", (1, 28, 28), width=8, affine=False)
    assert [n for n, _ in model.named_parameters()] == [
        "features.0.weight",
        "features.3.weight",
        "features.6.weight",
        "classifier.weight",
    ]


@pytest.mark.parametrize("name,shape,kw", ALL_NETS, ids=NET_IDS)
def test_affine_adds_trained_normalization_parameters(name, shape, kw):
    """affine: true gives every norm a trainable weight (1) and bias (0) and the classifier a
    bias; the weight layers are the same tensors; the loss is no longer invariant to scaling
    the trained parameters (the affine ones among them), though still to scaling the
    conv/linear weights alone, each of which feeds a normalization."""
    plain = model_of(name, shape, **kw)
    model = model_of(name, shape, affine=True, **kw)
    assert model.affine and not model.scale_invariant
    norms = {n: m for n, m in model.named_modules() if isinstance(m, NORM_LAYERS)}
    assert norms
    expected = {f"{n}.{p}" for n in norms for p in ("weight", "bias")} | {"classifier.bias"}
    params = dict(model.named_parameters())
    assert set(params) - set(dict(plain.named_parameters())) == expected
    for n in norms:
        assert params[f"{n}.weight"].requires_grad and params[f"{n}.bias"].requires_grad
        assert torch.equal(params[f"{n}.weight"], torch.ones_like(params[f"{n}.weight"]))
        assert torch.equal(params[f"{n}.bias"], torch.zeros_like(params[f"{n}.bias"]))
    assert not params["classifier.bias"].requires_grad  # frozen with the classifier
    # the same weight layers, drawn the same: affine parameters take no random draw
    assert list(weight_layers(model)) == list(weight_layers(plain))
    assert all(torch.equal(p, weight_layers(plain)[k]) for k, p in weight_layers(model).items())
    assert torch.equal(model.classifier.weight, plain.classifier.weight)
    x, y = batch(shape)
    assert scale_invariance_error(plain, F.cross_entropy, x, y, 3.0) < 1e-10
    assert scale_invariance_error(model, F.cross_entropy, x, y, 3.0) > 1e-3
    assert scale_invariance_error(model, F.cross_entropy, x, y, 3.0, weights_only=True) < 1e-10


def test_affine_parameters_change_the_output():
    """The affine parameters act: moving them moves the logits (the scale of the last norm's
    weight scales the features the classifier sees)."""
    model = model_of("vgg19", (3, 32, 32), width_multiplier=0.125, affine=True)
    x, _ = batch((3, 32, 32))
    before = model(x)
    with torch.no_grad():
        last = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)][-1]
        last.weight.mul_(2.0)
        last.bias.add_(0.5)
    assert (model(x) - before).abs().max() > 1e-3


def test_affine_with_a_trained_last_layer_is_the_ordinary_net():
    """The adaptive-SDE authors' ResNet-56: affine BN, trained last layer with a bias; every
    parameter trains (and so takes the coupled weight decay), the weight layers are the
    conv kernels and the classifier matrix."""
    model = model_of("resnet56", (3, 32, 32), dtype=torch.float32, affine=True, freeze_last_layer=False)
    assert all(p.requires_grad for p in model.parameters())
    assert _count(model, nn.BatchNorm2d) == 55 and all(
        m.affine for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    )
    assert list(weight_layers(model))[-1] == "classifier.weight" and len(weight_layers(model)) == 56
    assert all(p.ndim == 1 for n, p in model.named_parameters() if n not in weight_layers(model))
    assert not model.scale_invariant


@pytest.mark.parametrize(
    "name,shape,kw,fan_in",
    [
        ("mlp", (1, 28, 28), {"width": 512}, 512),
        ("mlp", (1, 28, 28), {"width": 512, "norm": "none"}, 512),
        ("preresnet32", (3, 16, 16), {"width_multiplier": 4}, 256),
    ],
    ids=["mlp-bn", "mlp-none", "preresnet32x4"],
)
def test_he_last_layer_init(name, shape, kw, fan_in):
    """``he``: the classifier's weight from N(0, 2/fan_in), bias zero; ``pytorch``: nn.Linear's
    kaiming_uniform(a=sqrt(5)), std 1/sqrt(3 fan_in) and |w| <= 1/sqrt(fan_in), sqrt(6) ~ 2.45
    times smaller. With 100 classes there are 25,600-51,200 weights: the standard error of
    a std estimate is std/sqrt(2n) < 0.5%, so 3% is many standard errors. The features are
    drawn the same under either init."""
    torch.manual_seed(0)
    he = build_model(spec(name, last_layer_init="he", **kw), shape, 100)
    torch.manual_seed(0)
    default = build_model(spec(name, **kw), shape, 100)
    w_he, w_pt = he.classifier.weight.detach().double(), default.classifier.weight.detach().double()
    n = w_he.numel()
    assert w_he.shape == (100, fan_in)
    assert w_he.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
    assert abs(w_he.mean().item()) < 5 * math.sqrt(2 / fan_in) / math.sqrt(n)
    assert (w_he.abs() > 1 / math.sqrt(fan_in)).double().mean().item() == pytest.approx(
        0.4795, abs=0.02
    )  # P(|Z| > 1/sqrt 2)
    assert w_pt.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.03)
    assert w_pt.abs().max().item() <= 1 / math.sqrt(fan_in)
    assert (w_he.std() / w_pt.std()).item() == pytest.approx(math.sqrt(6), rel=0.05)
    if he.classifier.bias is not None:
        assert torch.equal(he.classifier.bias, torch.zeros_like(he.classifier.bias))
        assert default.classifier.bias.abs().max() > 0
    for (k, a), b in zip(he.features.state_dict().items(), default.features.state_dict().values()):
        assert torch.equal(a, b), k
    assert he.scale_invariant == default.scale_invariant
    assert not he.classifier.weight.requires_grad


def test_unknown_last_layer_init_is_refused():
    with pytest.raises(ValueError, match="last_layer_init"):
        build_model(spec("mlp", last_layer_init="xavier"), (1, 28, 28), 10)


def test_vgg_pooling_option():
    """pooling: average replaces each stage's max pool (the SVAG code's VGG19); the default is max."""
    from lrdynamics.engine.models import build_model

    base = {"name": "vgg19", "norm": "gn", "groups": 2, "norm_eps": 1e-30, "freeze_last_layer": True,
            "width_multiplier": 0.125, "width": None, "depth": 3}  # fmt: skip
    kinds = {p: {type(m).__name__ for m in build_model({**base, "pooling": p}, (3, 32, 32), 10).modules()}
             for p in ("max", "average")}  # fmt: skip
    assert "MaxPool2d" in kinds["max"] and "AvgPool2d" not in kinds["max"]
    assert "AvgPool2d" in kinds["average"] and "MaxPool2d" not in kinds["average"]
    default = {type(m).__name__ for m in build_model(base, (3, 32, 32), 10).modules()}
    assert default == kinds["max"]
