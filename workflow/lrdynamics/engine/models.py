"""Models, with the scale invariance the theory needs, and a numerical test of it.

A net is scale-invariant (``L(c*w) == L(w)`` for all c > 0) when every conv/linear
weight is followed by a normalization layer without affine parameters and the final
linear layer is frozen at its random init (Li & Arora 2020). ``model.affine: true``
gives the normalization layers a learnable weight and bias (and the classifier its
bias): the ordinary nets of the adaptive-SDE paper, not scale-invariant; the affine
parameters train and decay like the biases of ``norm: none`` (every trainable
parameter does), and like them are not weight layers (``weight_layers``: no norms
recorded, not rescaled). Normalization divides by
sqrt(var + eps): with torch's usual eps = 1e-5 the invariance is only approximate and
the Exp-LR equivalence no longer holds to float precision. The SVAG authors' code uses
eps = 0, which torch 2.14 rejects for batch norm in training; our default 1e-30 is
below float32 resolution of any realistic variance, so the net is invariant to float
precision.

``norm: none`` builds the same architecture without normalization (conv/linear biases
on), which is not scale-invariant: the control nets of the papers (docs/science.md
section 1). Architecture facts (sizes, channel counts) are ``engine.facts``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from lrdynamics.engine.facts import ARCHITECTURES, VGG16_LAYERS, VGG19_LAYERS, model_width


def make_norm(kind: str, channels: int, spatial: bool, groups: int, eps: float, affine: bool = False) -> nn.Module:
    """Normalization bn, gn, ln (over C[,H,W]) or none; without affine parameters unless
    ``affine`` (torch's weight 1, bias 0 at init, no random draw)."""
    if kind == "bn":
        return (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(channels, eps=eps, affine=affine)
    if kind == "gn":
        return nn.GroupNorm(groups, channels, eps=eps, affine=affine)
    if kind == "ln":
        # LayerNorm over all of (C, H, W) is GroupNorm with one group.
        return (
            nn.GroupNorm(1, channels, eps=eps, affine=affine)
            if spatial
            else nn.LayerNorm(channels, eps=eps, elementwise_affine=affine)
        )
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; allowed: bn, gn, ln, none")


@dataclass(frozen=True)
class Norm:
    """The normalization of a net (``model.norm``, ``groups``, ``norm_eps``, ``affine``):
    ``norm(channels, spatial)`` is one layer of it."""

    kind: str
    groups: int
    eps: float
    affine: bool = False

    def __call__(self, channels: int, spatial: bool = True) -> nn.Module:
        return make_norm(self.kind, channels, spatial, self.groups, self.eps, self.affine)

    @property
    def bias(self) -> bool:
        """Whether the conv/linear layers have biases: only without normalization."""
        return self.kind == "none"


LAST_LAYER_INITS = ("pytorch", "he")


class ClassifierNet(nn.Module):
    """A feature extractor followed by a linear classifier (frozen for scale invariance).

    The classifier has a bias without normalization or with affine normalization (an
    ordinary net). ``last_layer_init``: ``pytorch`` keeps nn.Linear's default init
    (kaiming_uniform(a=sqrt(5)): weight std 1/sqrt(3 fan_in)); ``he`` redraws the weight
    from N(0, 2/fan_in) and zeroes the bias, as the SVAG code does (logits about sqrt(6)
    = 2.45 times larger). The redraw comes after the features are built, so the feature
    weights of a seed are the same under either init.
    """

    def __init__(
        self,
        features: nn.Module,
        n_features: int,
        n_classes: int,
        norm: Norm,
        freeze_last: bool,
        last_layer_init: str = "pytorch",
    ):
        super().__init__()
        if last_layer_init not in LAST_LAYER_INITS:
            raise ValueError(f"unknown last_layer_init {last_layer_init!r}; allowed: {', '.join(LAST_LAYER_INITS)}")
        self.features = features
        self.classifier = nn.Linear(n_features, n_classes, bias=norm.bias or norm.affine)
        if last_layer_init == "he":
            nn.init.normal_(self.classifier.weight, 0.0, math.sqrt(2.0 / n_features))
            if self.classifier.bias is not None:
                nn.init.zeros_(self.classifier.bias)
        self.classifier.requires_grad_(not freeze_last)
        self.norm = norm.kind
        self.affine = norm.affine
        self.scale_invariant = norm.kind != "none" and not norm.affine and freeze_last

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def mlp(in_shape, n_classes, *, width, depth, norm: Norm, **head):
    """Fully connected net: depth x [linear -> norm -> relu], then the classifier."""
    c, h, w = in_shape
    layers, n_in = [nn.Flatten()], c * h * w
    for _ in range(depth):
        layers += [nn.Linear(n_in, width, bias=norm.bias), norm(width, spatial=False), nn.ReLU()]
        n_in = width
    return ClassifierNet(nn.Sequential(*layers), width, n_classes, norm, **head)


def cnn4(in_shape, n_classes, *, width, norm: Norm, **head):
    """The 4-layer normalized CNN of the intrinsic-LR paper's MNIST experiment.

    Three 3x3 convs (width, 2*width, 4*width channels, the last two with stride 2), each
    followed by normalization and ReLU, global average pooling, and the linear classifier.
    The paper gives only "4-layer CNN with BN"; this layout is our choice (config/README.md).
    """
    c = in_shape[0]
    layers, chans = [], [c, width, 2 * width, 4 * width]
    for i in range(3):
        layers += [
            nn.Conv2d(chans[i], chans[i + 1], 3, stride=1 if i == 0 else 2, padding=1, bias=norm.bias),
            norm(chans[i + 1]),
            nn.ReLU(),
        ]
    layers += [nn.AdaptiveAvgPool2d(1)]
    return ClassifierNet(nn.Sequential(*layers), chans[-1], n_classes, norm, **head)


class PreActBlock(nn.Module):
    """Pre-activation basic block: norm-relu-conv-norm-relu-conv plus the shortcut."""

    def __init__(self, c_in, c_out, stride, norm: Norm, shortcut: bool):
        super().__init__()
        bias = norm.bias
        self.norm1 = norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)
        self.norm2 = norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias)
        # SVAG code ("homo" PreResNet): the first block of every stage has the shortcut
        # norm -> 1x1 conv, even at stride 1, so that every path is normalized.
        self.shortcut = (
            nn.Sequential(norm(c_in), nn.Conv2d(c_in, c_out, 1, stride=stride, bias=bias)) if shortcut else None
        )

    def forward(self, x):
        out = self.conv1(torch.relu(self.norm1(x)))
        out = self.conv2(torch.relu(self.norm2(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


def preresnet32(in_shape, n_classes, *, width_multiplier, norm: Norm, **head):
    """Scale-invariant PreResNet32 as in the SVAG paper's code.

    conv3x3(16k) -> 3 stages x 5 pre-activation blocks (16k, 32k, 64k channels, strides
    1, 2, 2) -> norm -> global average pool -> linear (k = width multiplier). Like the
    authors' code there is no ReLU between the final norm and the pooling.
    """
    widths = [round(c * width_multiplier) for c in ARCHITECTURES["preresnet32"].channels]
    strides, n_blocks = [1, 2, 2], 5  # depth 32 = 6*5 + 2
    layers: list[nn.Module] = [nn.Conv2d(in_shape[0], widths[0], 3, padding=1, bias=norm.bias)]
    c_in = widths[0]
    for width, stride in zip(widths, strides):
        for b in range(n_blocks):
            first = b == 0
            layers.append(PreActBlock(c_in, width, stride if first else 1, norm, shortcut=first))
            c_in = width
    layers += [norm(c_in), nn.AdaptiveAvgPool2d(1)]
    return ClassifierNet(nn.Sequential(*layers), c_in, n_classes, norm, **head)


class BasicBlock(nn.Module):
    """Post-activation basic block of the CIFAR ResNets (He et al. 2016):
    relu(norm(conv(relu(norm(conv(x))))) + shortcut(x)), shortcut "option A": the
    identity, subsampled and zero-padded in channels where the shape changes (no weights)."""

    def __init__(self, c_in, c_out, stride, norm: Norm):
        super().__init__()
        bias = norm.bias
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias)
        self.norm2 = norm(c_out)
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x):
        out = torch.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        short = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            short = nn.functional.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return torch.relu(out + short)


def resnet56(in_shape, n_classes, *, width_multiplier, norm: Norm, **head):
    """ResNet-56 for CIFAR (He et al. 2016), as in the adaptive-SDE paper's code.

    conv3x3(16k) -> norm -> relu -> 3 stages x 9 basic blocks (16k, 32k, 64k channels,
    strides 1, 2, 2; option-A shortcuts) -> global average pool -> linear. By default the
    normalization has no affine parameters, like every net here; with the last layer
    frozen the net is scale-invariant (every conv feeds a normalization, the shortcuts
    carry no weights). The authors' net is the ordinary one: ``affine: true``,
    ``freeze_last_layer: false``.
    """
    widths = [round(c * width_multiplier) for c in ARCHITECTURES["resnet56"].channels]
    strides, n_blocks = [1, 2, 2], 9  # 56 = 6*9 + 2
    layers: list[nn.Module] = [
        nn.Conv2d(in_shape[0], widths[0], 3, padding=1, bias=norm.bias),
        norm(widths[0]),
        nn.ReLU(),
    ]
    c_in = widths[0]
    for width, stride in zip(widths, strides):
        for b in range(n_blocks):
            layers.append(BasicBlock(c_in, width, stride if b == 0 else 1, norm))
            c_in = width
    layers.append(nn.AdaptiveAvgPool2d(1))
    return ClassifierNet(nn.Sequential(*layers), c_in, n_classes, norm, **head)


def _vgg(cfg, in_shape, n_classes, *, width_multiplier, norm: Norm, pooling: str = "max", **head):
    """A VGG of layer list ``cfg`` (channel counts, "M" a 2x2 pool: max, or average as the
    SVAG code's VGG19) with the CIFAR-style classifier: each conv followed by the
    normalization and ReLU, then an adaptive average pool to 1x1 and the single linear
    classifier of the CIFAR variants."""
    layers, c_in = [], in_shape[0]
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2) if pooling == "max" else nn.AvgPool2d(2))
            continue
        c_out = round(v * width_multiplier)  # config validation checks it is whole
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm.bias), norm(c_out), nn.ReLU()]
        c_in = c_out
    layers.append(nn.AdaptiveAvgPool2d(1))  # 1x1 at 32 px; pools larger images the same way
    return ClassifierNet(nn.Sequential(*layers), c_in, n_classes, norm, **head)


def vgg16(in_shape, n_classes, **kwargs):
    """VGG16 (configuration D: 13 3x3 convs in 5 stages) with the CIFAR-style classifier.

    Each conv is followed by the chosen normalization and ReLU, each stage by 2x2 max
    pooling; then the single linear classifier of the CIFAR variants (as in the SVAG and
    adaptive-SDE code). Images must be at least 32 pixels.
    """
    return _vgg(VGG16_LAYERS, in_shape, n_classes, **kwargs)


def vgg19(in_shape, n_classes, **kwargs):
    """VGG19 (configuration E: 16 3x3 convs in 5 stages), otherwise as ``vgg16``: the third
    LSR net of the SVAG paper (with GroupNorm), which the SVAG code calls "vgg16"."""
    return _vgg(VGG19_LAYERS, in_shape, n_classes, **kwargs)


BUILDERS = {"mlp": mlp, "cnn4": cnn4, "preresnet32": preresnet32, "resnet56": resnet56, "vgg16": vgg16, "vgg19": vgg19}


def build_model(spec: dict, in_shape, n_classes: int) -> ClassifierNet:
    """The model described by a resolved ``model`` config entry."""
    name = spec["name"]
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(BUILDERS)}")
    kwargs = dict(
        norm=Norm(spec["norm"], spec["groups"], spec["norm_eps"], spec.get("affine", False)),
        freeze_last=spec["freeze_last_layer"],
        last_layer_init=spec.get("last_layer_init", "pytorch"),
    )
    if ARCHITECTURES[name].size_key == "width":
        kwargs["width"] = model_width(spec)
    else:
        kwargs["width_multiplier"] = spec["width_multiplier"]
    if name == "mlp":
        kwargs["depth"] = spec["depth"]
    if name in ("vgg16", "vgg19"):
        kwargs["pooling"] = spec.get("pooling", "max")
    return BUILDERS[name](in_shape, n_classes, **kwargs)


@contextlib.contextmanager
def kept_normalization_statistics(model: nn.Module):
    """Batch-norm running statistics (and the train/eval mode) as they were before the block.

    For measurements that run the model in train mode (noise estimates, BN recalibration
    before an evaluation) and must leave the training run exactly as they found it.
    """
    saved = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    was_training = model.training
    try:
        yield
    finally:
        model.load_state_dict(saved, strict=False)
        model.train(was_training)


def weight_layers(model: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable weight tensors (conv kernels, linear matrices) by parameter name.

    In a scale-invariant model these are exactly the parameters whose scale the loss
    ignores; their norms are the ones the theory tracks.
    """
    return {n: p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1}


@torch.no_grad()
def scale_invariance_error(model: nn.Module, loss_fn, x, y, c: float, weights_only: bool = False) -> float:
    """|L(c*w) - L(w)| / |L(w)| with every trainable parameter w scaled by ``c`` (train-mode
    norms): the invariance the Exp-LR identity and weight rescaling need. In a net without
    biases and affine parameters the trainable parameters are the weight layers.
    ``weights_only``: scale the weight layers only (an affine net stays invariant to its
    conv/linear weights, each feeding a normalization; its affine parameters break it).

    Train mode is what SGD sees (batch statistics); running statistics are saved and
    restored so the check leaves the model as it found it.
    """
    state = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    model.train()
    scaled_params = (
        list(weight_layers(model).values()) if weights_only else [p for p in model.parameters() if p.requires_grad]
    )
    try:
        base = loss_fn(model(x), y)
        for p in scaled_params:
            p.mul_(c)
        scaled = loss_fn(model(x), y)
    finally:
        model.load_state_dict(state)
        model.train(was_training)
    return float((scaled - base).abs() / base.abs().clamp_min(torch.finfo(base.dtype).tiny))


class CubicReLU(nn.Module):
    """relu(x)^3: smooth but fast-growing, an activation of bad regularity (docs/science.md section 6)."""

    def forward(self, x):
        return torch.relu(x) ** 3


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus, "cubic_relu": CubicReLU}


def fc_net(in_features: int, n_classes: int, width: int, depth: int, activation: str, norm: str, bias: bool):
    """Fully connected net of the large-LR experiments (Cohen et al.'s fc-<activation>):
    ``depth`` hidden layers of ``width``, each Linear -> [BatchNorm1d(affine=False)] ->
    activation, then a Linear output layer. Torch's default init and BN eps; not
    scale-invariant (the last layer trains)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
    layers, n_in = [nn.Flatten()], in_features
    for _ in range(depth):
        layers.append(nn.Linear(n_in, width, bias=bias))
        if norm == "bn":
            layers.append(nn.BatchNorm1d(width, affine=False))
        elif norm != "none":
            raise ValueError(f"fc_net norm {norm!r}; allowed: none, bn")
        layers.append(ACTIVATIONS[activation]())
        n_in = width
    layers.append(nn.Linear(n_in, n_classes, bias=bias))
    return nn.Sequential(*layers)


@torch.no_grad()
def set_layer_norms(model: nn.Module, norms) -> None:
    """Rescale each weight layer (in order) to the given Frobenius norm (init norms of the
    balancing experiments, e.g. ||W1|| = 1, ||W2|| = 10)."""
    layers = list(weight_layers(model).values())
    if len(norms) != len(layers):
        raise ValueError(f"{len(norms)} layer norms given for {len(layers)} weight layers")
    for p, target in zip(layers, norms):
        p.mul_(target / p.norm())
