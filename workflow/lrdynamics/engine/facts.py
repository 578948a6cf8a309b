"""What the engine supports, declared once: the dataset sources with their native sizes,
and each architecture of the SGD engine (how it is sized, its default width, the channel
counts it normalizes, the smallest image it takes).

Plain Python: the config checks a run against these facts before any job starts (subset
sizes, GroupNorm groups, whole channel counts, image size); ``engine.data`` offers the
sources to its ``locate`` command and ``engine.models`` builds the nets from them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSource:
    """A dataset the engine reads: native train and test sizes, channels, image side, classes."""

    name: str
    n_train: int
    n_test: int
    channels: int
    side: int
    classes: int


DATASET_SOURCES = {
    d.name: d
    for d in (
        DatasetSource("fashion_mnist", 60000, 10000, 1, 28, 10),
        DatasetSource("mnist", 60000, 10000, 1, 28, 10),
        DatasetSource("cifar10", 50000, 10000, 3, 32, 10),
        DatasetSource("cifar100", 50000, 10000, 3, 32, 100),
    )
}

# VGG16, configuration D: 13 3x3 convs in 5 stages, "M" a 2x2 max pool.
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# VGG19, configuration E: 16 3x3 convs in 5 stages.
VGG19_LAYERS = (64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M", *[512] * 4, "M")


@dataclass(frozen=True)
class Architecture:
    """``size_key``: the model key that scales the net (``width``, or ``width_multiplier``
    times the base channel counts); ``channels``: the normalized channel counts at size 1;
    ``default_width``: the width when ``model.width`` is null."""

    name: str
    size_key: str
    channels: tuple[int, ...]
    default_width: int | None = None
    min_side: int = 1
    why_min_side: str = ""


ARCHITECTURES = {
    a.name: a
    for a in (
        Architecture("mlp", "width", (1,), default_width=256),
        Architecture("cnn4", "width", (1, 2, 4), default_width=32),
        Architecture("preresnet32", "width_multiplier", (16, 32, 64)),
        Architecture("resnet56", "width_multiplier", (16, 32, 64)),
        Architecture(
            "vgg16", "width_multiplier", (64, 128, 256, 512), min_side=32, why_min_side="halves the image five times"
        ),  # fmt: skip
        Architecture(
            "vgg19", "width_multiplier", (64, 128, 256, 512), min_side=32, why_min_side="halves the image five times"
        ),  # fmt: skip
    )
}
MODEL_NAMES = tuple(ARCHITECTURES)


def model_width(model: dict) -> int | None:
    """``model.width``, or the architecture's default when it is null (None: not width-sized)."""
    return model.get("width") or ARCHITECTURES[model["name"]].default_width


def channel_counts(model: dict) -> list[float]:
    """The channel/feature counts a resolved ``model`` entry normalizes (its GroupNorm
    groups must divide them; a width multiplier must make them whole)."""
    arch = ARCHITECTURES[model["name"]]
    scale = model_width(model) if arch.size_key == "width" else model["width_multiplier"]
    return [c * scale for c in arch.channels]
