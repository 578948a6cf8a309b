"""The data path of training, on the device: a prepared split resident as one normalized
tensor, epochs of a fresh ``randperm``, batches sliced from it and augmented whole.

Augmentation has the distribution of torchvision's per-sample
``RandomCrop(size, padding=p)`` (zero padding in pixel space) and
``RandomHorizontalFlip()``, with one gather for the whole batch instead of a Python call
per image. No per-sample Python, no DataLoader.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(padded: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Crop a random size x size window from each image of an already padded batch."""
    n, c, hp, wp = padded.shape
    dev = padded.device
    dy = torch.randint(0, hp - size + 1, (n,), device=dev, generator=generator)
    dx = torch.randint(0, wp - size + 1, (n,), device=dev, generator=generator)
    # Every window as a view (n, c, hp-size+1, wp-size+1, size, size); one gather picks each
    # image's window (6x faster than indexing every pixel: 0.14 vs 0.85 ms at 128x1x36x36).
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)
    return windows[torch.arange(n, device=dev), :, dy, dx]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def seeded_generator(device, seed: int) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (each random stream of a run has one)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


class DeviceData:
    """A prepared split resident on the device, normalized (and padded for cropping)."""

    def __init__(self, record: dict, device, dtype, padding: int = 0):
        images = record["images"].to(device=device)
        self.labels = record["labels"].to(device=device)
        self.side = images.shape[-1]
        self.padding = padding
        x = images.to(dtype) / 255.0
        if padding:
            # torchvision's RandomCrop pads with zeros in pixel space, before normalization.
            x = F.pad(x, (padding,) * 4, value=0.0)
        mean = torch.tensor(record["mean"], dtype=dtype, device=device)[None, :, None, None]
        std = torch.tensor(record["std"], dtype=dtype, device=device)[None, :, None, None]
        self.images = (x - mean) / std
        self.n = len(self.labels)
        self.shape = (images.shape[1], self.side, self.side)
        self.channels_last = False  # batches in the model's layout (set by the trainer)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def batch(self, idx, crop: bool, flip: bool, generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx]
        if crop:
            x = random_crop(x, self.side, generator)
        elif self.padding:
            p = self.padding
            x = x[:, :, p:-p, p:-p]
        if flip:
            x = random_flip(x, generator)
        return self._layout(x), self.labels[idx]

    def unpadded(self, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.n if n is None else min(n, self.n)
        x = self.images[:n]
        if self.padding:
            p = self.padding
            x = x[:, :, p:-p, p:-p]
        return self._layout(x), self.labels[:n]


class BatchStream:
    """Minibatches in epochs of a fresh ``randperm`` (drawn on the device), augmented.

    SGD draws from one stream; SVAG's second batch comes from a second stream with its
    own generator, so the two batches of an update are independent.
    """

    def __init__(self, data: DeviceData, batch_size: int, steps_in_epoch: int, crop, flip, generator):
        self.data, self.B, self.steps_in_epoch = data, batch_size, steps_in_epoch
        self.crop, self.flip, self.generator = crop, flip, generator
        self.pos, self.perm = 0, None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.batch(self.next_indices(), self.crop, self.flip, self.generator)

    def next_indices(self) -> torch.Tensor:
        """The indices of the next batch (an ensemble gathers its members' batches at once)."""
        if self.pos == 0:
            self.perm = torch.randperm(self.data.n, device=self.data.images.device, generator=self.generator)
        idx = self.perm[self.pos * self.B : (self.pos + 1) * self.B]
        self.pos = (self.pos + 1) % self.steps_in_epoch
        return idx

    def state_dict(self) -> dict:
        return {"pos": self.pos, "perm": self.perm, "generator": self.generator.get_state()}

    def load_state_dict(self, saved: dict) -> None:
        self.pos, self.perm = saved["pos"], saved["perm"]
        self.generator.set_state(saved["generator"].cpu())  # generator states live on the CPU
