"""Models: architectures are what their names say; scale invariance holds numerically."""

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


@pytest.mark.parametrize("name,shape", [("mlp", (1, 28, 28)), ("vgg16", (3, 32, 32)), ("cnn4", (1, 28, 28))])
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
