"""Datasets: find the raw files, prepare ``resources/<name>/{train,test}.pt``, load them.

Prepared files hold uint8 images (N, C, H, W), int64 labels, the class names, the
per-channel mean/std of the training images and a SHA-256 checksum of the arrays,
verified on every load. Raw files are read in their published on-disk formats (IDX for
MNIST and Fashion-MNIST, the pickled "python version" batches for CIFAR) from the places
listed by ``raw_locations``; torchvision downloads them when the dataset's ``download`` is
true.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from lrdynamics.engine.facts import DATASET_SOURCES
from lrdynamics.engine.files import atomic_path

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# MNIST and Fashion-MNIST: the same IDX files under the same names (each may be .gz).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
MNIST_CLASSES = [str(digit) for digit in range(10)]
IDX_CLASSES = {"fashion_mnist": FASHION_MNIST_CLASSES, "mnist": MNIST_CLASSES}
CIFAR = {
    # source: (folder in the archive, archive name, train members, test member, meta, label key)
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        ("batches.meta", "label_names"),
        "labels",
    ),
    "cifar100": (
        "cifar-100-python",
        "cifar-100-python.tar.gz",
        ["train"],
        "test",
        ("meta", "fine_label_names"),
        "fine_labels",
    ),
}
TORCHVISION_CLASS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt or not what it claims to be."""


# --- reading the published formats -------------------------------------------------


def _open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format: big-endian header, uint8 payload), .gz or not."""
    try:
        with _open_maybe_gz(Path(path)) as f:
            data = f.read()
    except (OSError, EOFError) as err:  # a cut download, an HTML page named .gz
        raise DatasetError(f"{path}: unreadable ({err}); replace the file") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: truncated inside its header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: truncated: header says {shape}, found {payload.size} bytes")
    return payload.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx_dataset(folder: Path, source: str) -> dict:
    """Read MNIST or Fashion-MNIST (``source``) from the four IDX files in ``folder``."""
    out = {"classes": IDX_CLASSES[source]}
    for split, (images, labels) in IDX_FILES.items():
        x = read_idx(_find_idx(folder, images))
        y = read_idx(_find_idx(folder, labels))
        out[split] = (x[:, None, :, :], y.astype(np.int64))
    return out


def _unpickle(f) -> dict:
    # The CIFAR batches were pickled by Python 2; latin1 maps their byte strings 1:1.
    return pickle.load(f, encoding="latin1")


def read_cifar(location: Path, source: str) -> dict:
    """Read CIFAR-10/100 from the extracted folder or from the .tar.gz archive."""
    folder = CIFAR[source][0]
    location = Path(location)
    try:
        if location.is_dir():
            return _read_cifar_from(lambda member: open(location / member, "rb"), source)
        with tarfile.open(location, "r:gz") as tar:
            return _read_cifar_from(lambda member: tar.extractfile(f"{folder}/{member}"), source)
    except (KeyError, EOFError, pickle.UnpicklingError, tarfile.TarError, OSError) as err:
        raise DatasetError(f"{location}: not a readable {source} copy ({err})") from err


def _read_cifar_from(open_member, source: str) -> dict:
    """Read the CIFAR pickles given a function that opens a member by name."""
    _, _, train_members, test_member, (meta_file, meta_key), label_key = CIFAR[source]

    def load(member):
        with open_member(member) as f:
            return _unpickle(io.BytesIO(f.read()))

    def split(members):
        batches = [load(m) for m in members]
        x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
        y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        return x.reshape(-1, 3, 32, 32), y

    return {"train": split(train_members), "test": split([test_member]), "classes": list(load(meta_file)[meta_key])}


# --- where raw files may be ----------------------------------------------------------


def raw_locations(source: str, data_dir: Path) -> list[Path]:
    """Places searched for the raw files of ``source``, in order."""
    data_dir, raw = Path(data_dir), Path(data_dir) / "raw"
    if source in IDX_CLASSES:  # ours, then torchvision's download folder (and Debian's package)
        debian = [DEBIAN_FASHION_MNIST] if source == "fashion_mnist" else []
        return [raw / source, raw / TORCHVISION_CLASS[source] / "raw", *debian]
    folder, archive = CIFAR[source][:2]
    return [raw / folder, data_dir / folder, raw / archive, data_dir / archive]


def _present(source: str, location: Path) -> bool:
    if source in IDX_CLASSES:
        return location.is_dir() and all(_find_idx(location, stem) for pair in IDX_FILES.values() for stem in pair)
    return location.is_file() or (location / CIFAR[source][3]).is_file()


def how_to_provide(source: str, data_dir: Path) -> str:
    raw = Path(data_dir) / "raw"
    if source in IDX_CLASSES:
        debian = (
            "install Debian's package (apt-get install dataset-fashion-mnist), or " if source == "fashion_mnist" else ""
        )
        names = ", ".join(f"{stem}[.gz]" for pair in IDX_FILES.values() for stem in pair)
        return (
            f"{debian}place the four IDX files ({names}) in {raw / source} (or torchvision's "
            f"{raw / TORCHVISION_CLASS[source] / 'raw'}), or set `download: true` for this dataset on a "
            "machine with internet access"
        )
    folder, archive = CIFAR[source][:2]
    return (
        f"place {archive} (the 'python version' from www.cs.toronto.edu/~kriz/cifar.html) in "
        f"{data_dir} or {raw}, or its extracted folder {folder}/ there, or set `download: true` "
        "for this dataset on a machine with internet access"
    )


def read_raw(source: str, data_dir: Path, download: bool = False) -> dict:
    """Read the raw dataset from the first location that has it (downloading if allowed)."""
    locations = raw_locations(source, data_dir)
    for location in locations:
        if _present(source, location):
            return read_idx_dataset(location, source) if source in IDX_CLASSES else read_cifar(location, source)
    if download:
        import torchvision.datasets as tvd

        raw = Path(data_dir) / "raw"
        cls = getattr(tvd, TORCHVISION_CLASS[source])
        for train in (True, False):
            cls(root=str(raw), train=train, download=True)
        return read_raw(source, data_dir, download=False)
    searched = "\n".join(f"    {p}" for p in locations)
    raise DatasetError(
        f"dataset {source!r} not found. Looked in:\n{searched}\n  To provide it: " + how_to_provide(source, data_dir)
    )


# --- preparing --------------------------------------------------------------------------


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` examples with the class proportions of ``labels``.

    Each class gets floor(n * share) examples; the remainder goes to the classes with the
    largest fractional parts (ties to the smaller label). The draw within each class is a
    permutation from ``seed``, so the subset depends only on (labels, n, seed).
    """
    if n > len(labels):
        raise DatasetError(f"subset of {n} asked from {len(labels)} examples")
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / counts.sum()
    take = np.floor(exact).astype(int)
    order = np.lexsort((classes, -(exact - take)))
    take[order[: n - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def gd_example_indices(labels: np.ndarray, n: int, examples_from: str, seed: int) -> np.ndarray:
    """Sorted indices of the ``n`` training examples of a full-batch GD run.

    ``examples_from``: ``stratified`` (``stratified_subset`` with ``seed``) or ``first`` (the
    first ``n`` in file order, as Cohen et al.'s ``take_first``; ``seed`` unused).
    """
    if examples_from == "stratified":
        return stratified_subset(labels, n, seed)
    if examples_from == "first":
        if n > len(labels):
            raise DatasetError(f"the first {n} examples asked from {len(labels)}")
        return np.arange(n)
    raise ValueError(f"unknown examples_from {examples_from!r}; allowed: stratified, first")


def pixel_statistics(images: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and population standard deviation (ddof 0, numpy's default) over the
    first axis of uint8 ``images`` (N, ...), flattened to (C*H*W,), as float64.

    Exact: integer sums of the values and of their squares, in chunks (no float copy of the
    whole set), then var = (N*S2 - S1^2) / N^2.
    """
    if images.dtype != torch.uint8:
        raise DatasetError(f"pixel statistics of {images.dtype} images; expected uint8")
    flat = images.reshape(len(images), -1)
    n = len(flat)
    s1 = torch.zeros(flat.shape[1], dtype=torch.int64)
    s2 = torch.zeros(flat.shape[1], dtype=torch.int64)
    for start in range(0, n, chunk):
        part = flat[start : start + chunk].to(torch.int64)
        s1 += part.sum(0)
        s2 += (part * part).sum(0)
    mean = s1.double() / n
    var = (n * s2 - s1 * s1).double() / (float(n) * n)
    return mean, var.clamp_min(0).sqrt()


def resize_images(images: np.ndarray, side: int) -> np.ndarray:
    """Resize uint8 (N, C, H, W) images to side x side (bilinear, antialiased)."""
    x = torch.from_numpy(np.array(images, dtype=np.float32))
    y = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).numpy()


def checksum(images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.contiguous().numpy().tobytes())
    return h.hexdigest()


def _atomic_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def prepare_dataset(spec: dict, data_dir, out_dir) -> dict:
    """Write ``out_dir/{train,test}.pt`` for a resolved ``datasets`` entry; return a summary."""
    raw = read_raw(spec["source"], Path(data_dir), spec["download"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    splits = {}
    for split in ("train", "test"):
        x, y = raw[split]
        n = spec[f"{split}_subset"]
        if n is not None:
            idx = stratified_subset(y, n, spec["subset_seed"])
            x, y = x[idx], y[idx]
        if spec["resize"]:
            x = resize_images(x, spec["resize"])
        splits[split] = (torch.from_numpy(np.array(x, copy=True)), torch.from_numpy(np.array(y, copy=True)))
    train_x = splits["train"][0].double()
    mean = train_x.mean(dim=(0, 2, 3)) / 255.0
    std = train_x.std(dim=(0, 2, 3)) / 255.0
    for split, (x, y) in splits.items():
        record = {
            "images": x,
            "labels": y,
            "classes": list(raw["classes"]),
            "mean": mean.tolist(),
            "std": std.tolist(),
            "spec": dict(spec),
            "split": split,
            "sha256": checksum(x, y),
        }
        _atomic_save(record, out_dir / f"{split}.pt")
        summary[split] = {"n": len(y), "shape": list(x.shape[1:]), "sha256": record["sha256"]}
    return summary


def load_prepared(path) -> dict:
    """Load a prepared split and verify its checksum."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"prepared dataset file {path} is missing (the rule prepare_dataset makes it)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = record["images"], record["labels"]
    except Exception as err:  # torch raises many kinds on a truncated file
        raise DatasetError(f"{path}: unreadable prepared dataset ({err}); delete it and rerun") from err
    if checksum(images, labels) != record.get("sha256"):
        raise DatasetError(f"{path}: checksum mismatch, the file is corrupt; delete it and rerun")
    return record


def main(argv=None) -> int:
    """``python -m lrdynamics.engine.data locate SOURCE [--data-dir DIR]``: where the raw files are."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lrdynamics.engine.data")
    sub = parser.add_subparsers(dest="command", required=True)
    locate = sub.add_parser("locate", help="print where the raw files of a dataset are found")
    locate.add_argument("source", choices=sorted(DATASET_SOURCES))
    locate.add_argument("--data-dir", default="resources")
    args = parser.parse_args(argv)
    for location in raw_locations(args.source, Path(args.data_dir)):
        if _present(args.source, location):
            print(f"{args.source}: {location}")
            return 0
    searched = ", ".join(map(str, raw_locations(args.source, Path(args.data_dir))))
    print(f"{args.source}: not found (looked in {searched}); {how_to_provide(args.source, Path(args.data_dir))}")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
